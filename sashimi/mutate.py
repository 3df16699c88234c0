"""python -m sashimi.mutate: would the tests notice if this code were wrong?

Three modes:
  python -m sashimi.mutate               the catalogue: realistic, hand-written bugs in this
                                         code (sashimi/harness/catalogue.py), each anchored to a
                                         function and a syntax-tree pattern
  python -m sashimi.mutate --diff REV    mutants generated on the Python and C++ lines of
                                         sashimi/ and reference/ changed since git revision REV
                                         (committed or not), at most one a line: numerical
                                         operators first (conjugate, float64 -> float32, slice
                                         shifted by one, axis moved, exp / softplus / log
                                         swapped, mask or clamp dropped), then generic ones
                                         (arithmetic, comparison, constants, booleans, unary
                                         minus, range bounds, keyword dropped or its mode
                                         changed, return None, handler / raise / decorator
                                         removed, break <-> continue, removed statements and
                                         calls, argument order); C++ by text (loop bound,
                                         comparison, arithmetic, constant, statement removed)
  python -m sashimi.mutate --replay      the bug history (sashimi/harness/history.py): past
                                         bugs re-applied to today's code, and the tests that
                                         catch each
All the files are copied into one template git work tree; the tests run there once under
coverage (per-test contexts), which is also the baseline: a test that fails there is broken and
never counts as a kill. With --diff, --replay or --only coverage comes in rounds: the expected
killers, the test files importing the changed modules, those reaching them through other modules,
the rest; each later round only for the mutants that survived the ones before. Each mutant then
runs in its own copy of the template: the tests that execute its lines, fastest first, stopping at
the first failure. Verdicts: killed (a test
failed), error (a test errored: collection, fixture, crash), timeout, survived, not run (the
budget ended), invalid (a C++ mutant that does not build), equivalent (same bytecode). A changed
line marked `# mutate: skip <reason>` is reported as skipped. Nothing runs past --budget.
Exit status: 0 when every mutant was caught; 1 when one survived or a catalogue entry is stale;
3 when some were not run (--allow-partial accepts that); 2 on a usage error; 130 when stopped
(SIGTERM or Ctrl-C: what finished is reported). Run from a source checkout (tests/ beside sashimi/).
"""

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from sashimi.core.cli import Parser
from sashimi.harness import coverage_run, plan, report, selection
from sashimi.harness.catalogue import CATALOGUE
from sashimi.harness.markdown import commit, markdown
from sashimi.harness.mutation import ROOT, STOPPING, environment, make_template, source_files, stoppable
from sashimi.harness.runner import Settings, line_of, liveness, run_all


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(
        prog="python -m sashimi.mutate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--diff", metavar="REV", help="mutate the lines changed since git revision REV")
    mode.add_argument("--replay", action="store_true", help="re-apply the bug history and name the tests catching each")
    mode.add_argument("--list", action="store_true", help="print the catalogue with each entry's place, and exit")
    parser.add_argument("--only", action="append", metavar="ID", help="run only this catalogue entry (repeatable)")
    parser.add_argument(
        "--budget",
        type=float,
        metavar="MINUTES",
        help="the whole run's limit, coverage included: no mutant starts "
        "or runs past it (default 10 with --diff, none otherwise)",
    )
    parser.add_argument(
        "--under",
        action="append",
        metavar="PATH",
        help="with --diff: only the changed files under PATH (repeatable; a long change in parts)",
    )
    parser.add_argument(
        "--lines",
        action="append",
        metavar="FILE:LINE",
        help="with --diff: only the mutants of these changed lines "
        "(repeatable; a survivor checked again once a test or a skip mark answers it)",
    )
    parser.add_argument("--allow-partial", action="store_true", help="exit 0 even if the budget left mutants unrun")
    parser.add_argument(
        "--per-line", type=int, default=1, help="at most this many mutants per changed line (default 1)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="mutants run side by side, one core each (default 2)")
    gate = parser.add_mutually_exclusive_group()
    gate.add_argument("--gate", action="store_true", help="also run the gate against each mutant (--diff)")
    gate.add_argument("--no-gate", action="store_true", help="do not run the gate against each catalogue mutant")
    parser.add_argument("--fixtures", type=Path, help="published fixtures folder (default: the copy's tests/published)")
    parser.add_argument("--timeout", type=int, default=600, help="most seconds for one stage of a mutant's tests")
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the checkout to mutate (default: the one this package is in)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object with a `mutants` list")
    parser.add_argument("--markdown", type=Path, help="also write the report as Markdown")
    args = parser.parse_args(argv)
    for flag, value in (("--timeout", args.timeout), ("--jobs", args.jobs), ("--per-line", args.per_line)):
        if value < 1:
            parser.error(f"{flag} must be at least 1{' second' if flag == '--timeout' else ''}; got {value}")
    if (args.diff or args.replay) and args.only:
        parser.error("--only names catalogue entries; it cannot be combined with --diff or --replay")
    if (args.under or args.lines) and not args.diff:
        parser.error("--under and --lines limit the mutants of a change; they need --diff")
    bad = [x for x in args.lines or [] if not re.fullmatch(r"[^:]+:\d+", x)]
    if bad:
        parser.error(f"--lines takes FILE:LINE (sashimi/model/native.py:50); got {bad[0]!r}")
    if args.budget is None and args.diff:
        args.budget = 10.0
    if args.budget is not None and not 0 < args.budget < float("inf"):
        parser.error(f"--budget must be a positive number of minutes; got {args.budget}")
    unknown = set(args.only or []) - {m.id for m in CATALOGUE}
    if unknown:
        parser.error(f"unknown catalogue entries {sorted(unknown)}; see --list")
    args.with_gate = args.gate if args.diff else not args.no_gate
    return args


def rounds_apply(args) -> bool:
    """Coverage in rounds for a change, the history or a few catalogue entries; the whole
    catalogue measures the whole fast suite once."""
    return bool(args.diff or args.replay or args.only)


def list_catalogue() -> int:
    jobs, stale = plan.catalogue_jobs(ROOT)
    where = {j.id: f"{j.file}:{j.line}" for j in jobs}
    for m in CATALOGUE:
        place = where.get(m.id, f"STALE: {stale.get(m.id)}")
        print(f"{m.id:<36s} {place:<34s} {m.what}")
    print(f"{len(jobs)} entries anchored, {len(stale)} stale", file=sys.stderr)
    return 1 if stale else 0


def plan_jobs(args) -> tuple[list, list, dict]:
    if args.diff:
        under = tuple(u.rstrip("/") for u in args.under or []) or tuple(x.rpartition(":")[0] for x in args.lines or [])
        jobs, skipped = plan.diff_jobs(args.root, args.diff, args.per_line, under)
        if args.lines:
            jobs = [j for j in jobs if f"{j.file}:{j.line}" in set(args.lines)]
            skipped = [s for s in skipped if f"{s.file}:{s.line}" in set(args.lines)]
        log(
            f"{len(jobs)} mutants on the lines of sashimi/ and reference/ changed since {args.diff}; "
            f"{len(skipped)} lines marked skip"
        )
        return jobs, skipped, {}
    if args.replay:
        from sashimi.harness import history

        jobs, stale = history.replay_jobs(args.root)
    else:
        jobs, stale = plan.catalogue_jobs(args.root, args.only)
    for mutant_id, why in stale.items():
        log(f"STALE {mutant_id}: {why}")
    return jobs, [], stale


def measure(args, template: Path, jobs: list, tests: list[str] | None, deadline: float | None):
    """One round of coverage over `tests` (None: the fast suite) in the template."""
    include = sorted({j.file for j in jobs if j.file.endswith(".py")} | {j.probe[0] for j in jobs if j.probe})
    return coverage_run.cached(
        args.root / ".mutate-cache",
        template,
        source_files(template),
        tests,
        include if rounds_apply(args) else None,
        jobs=str(args.jobs),
        env=environment(template, args.fixtures),
        log=log,
        deadline=deadline,
        with_gate=args.with_gate,
    )


def later_rounds(args, template, jobs, results, measured, settings, deadline) -> list[dict]:
    """The survivors against each later round of test files (selection.rounds), measured only
    while some survive; a survivor caught there takes the new verdict. Returns the results."""
    first, *later = measured
    broken = dict(first.broken)
    for number, files in enumerate(later, 2):  # mutate: skip the round's number in a log line only
        survivors = {r["id"] for r in results if r["status"] == "survived"}
        if not survivors or STOPPING.is_set():
            break  # mutate: skip continue: no survivor or a stop makes each later round continue at once too
        log(f"round {number}: {len(survivors)} survivors against {len(files)} more test files ...")
        again = [j for j in jobs if j.id in survivors]
        try:
            coverage = measure(args, template, again, files, deadline)
        except coverage_run.Spent as e:
            log(f"round {number}: {e}; the survivors were judged by the earlier rounds' tests only")
            break
        broken |= coverage.broken
        coverage.broken = broken
        redone, _ = run_all(again, coverage, settings, args.jobs, deadline, log)
        better = {r["id"]: r for r in redone if r["status"] not in ("survived", "not run")}
        results = [better.get(r["id"], r) for r in results]
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    with stoppable():
        return run(args)


def run(args: argparse.Namespace) -> int:
    if args.list:
        return list_catalogue()
    args.root = args.root.resolve()  # mutate: skip a relative --root is the same folder all run (no chdir)
    if not (args.root / "tests").is_dir():
        print("error: run from a source checkout: tests/ not found beside sashimi/", file=sys.stderr)
        return 2
    start, at = time.monotonic(), commit(args.root)
    deadline = None if args.budget is None else start + 60 * args.budget
    try:
        jobs, skipped, stale = plan_jobs(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results, unrun, broken, why = [], list(jobs), {}, ""
    with tempfile.TemporaryDirectory(prefix="sashimi-mutate-") as tmp:  # mutate: skip the folder's name: unread
        template = Path(tmp) / "template"
        try:
            make_template(template, args.root)
            if jobs:
                files = sorted({j.file for j in jobs} | {j.probe[0] for j in jobs if j.probe})
                named = tuple(sorted({j.kills for j in jobs if j.kills}))
                rounds = selection.rounds(template, files, named) if rounds_apply(args) else [None]
                coverage = measure(args, template, jobs, rounds[0], deadline)
                broken = coverage.broken
                for test, failure in broken.items():
                    log(f"BROKEN {test}: {failure}")
                log(f"coverage ready after {time.monotonic() - start:.0f} s ({len(coverage.tests)} tests)")
                startup = coverage_run.startup_seconds(template, environment(template, args.fixtures), coverage)
                settings = Settings(
                    template,
                    args.fixtures,
                    args.with_gate,
                    args.timeout,
                    startup,
                    args.root / ".mutate-cache" / "native",
                )
                dead = liveness(jobs, coverage, settings, deadline)
                if dead:
                    print(f"error: {dead}", file=sys.stderr)
                    return 1
                results, unrun = run_all(jobs, coverage, settings, args.jobs, deadline, log)
                results = later_rounds(args, template, jobs, results, [coverage, *rounds[1:]], settings, deadline)
        except coverage_run.Spent as e:
            why = f" ({e})"
        except KeyboardInterrupt:  # stopped (mutation.stoppable: the children are ended already)
            pass
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    minutes = (time.monotonic() - start) / 60
    what = f"on the change since {args.diff}" if args.diff else "of the history" if args.replay else "of the catalogue"
    extra = dict(budget=args.budget, skipped=len(skipped), stale=len(stale), broken=len(broken), minutes=minutes)
    extra["stopped"] = STOPPING.is_set()  # not the budget: what the summary gives as the reason
    summary = report.summary(results, len(unrun), what, {**extra, "not_run_why": why})
    if args.markdown:
        command = "python -m sashimi.mutate" + (f" --diff {args.diff}" if args.diff else "")
        command += "".join(f" --under {u}" for u in (args.under or [])) + "".join(
            f" --lines {x}" for x in args.lines or []
        )
        command += " --replay" * args.replay + "".join(f" --only {m}" for m in (args.only or []))
        args.markdown.write_text(markdown(results, stale, command, minutes, summary, skipped, at))
    if args.json:
        print(
            json.dumps(
                {
                    "summary": summary,
                    "minutes": round(minutes, 2),
                    "mutants": results,
                    "not_run": [{"id": j.id, "file": j.file, "line": j.line, "operator": j.operator} for j in unrun],
                    "broken": broken,
                    "skipped": [vars(s) for s in skipped],
                    "stale": stale,
                },
                indent=1,
            )
        )
    else:
        for r in results:
            print(line_of(r))
        for s in skipped:
            print(f"{s.file}:{s.line} skipped: {s.reason}")
        for mutant_id, why_stale in stale.items():
            print(f"{mutant_id}: STALE: {why_stale}")
        for line in report.survivors_by_file(results):
            print(line)
        print(summary)
    return 130 if STOPPING.is_set() else report.exit_status(results, len(unrun), len(stale), args.allow_partial)


if __name__ == "__main__":
    sys.exit(main())

"""python -m sashimi.mutate: would the tests notice if this code were wrong?

Two modes:
  python -m sashimi.mutate               the catalogue: realistic, hand-written bugs in this
                                         code (sashimi/harness/catalogue.py), each anchored to a
                                         function and a syntax-tree pattern
  python -m sashimi.mutate --diff REV    mutants generated on the lines of sashimi/ and
                                         reference/ changed since git revision REV (committed or
                                         not): generic operators (arithmetic, comparison,
                                         constants, booleans, removed statements and calls,
                                         argument order) and numerical ones (conjugate, float64
                                         -> float32, slice shifted by one, axis moved, exp /
                                         softplus / log swapped, mask or clamp dropped)
First the fast suite runs once under coverage (per-test contexts) and the gate once per family;
then each mutant is applied alone to a temporary copy of the checkout, the tests that execute
its lines run fastest first and stop at the first failure (`killed by <test>`, or SURVIVED),
and the gate families that execute them run apart (reported beside, never deciding the kill).
A changed line marked `# mutate: skip <reason>` is reported as skipped (an equivalent mutant).
Exit status: 0 when every mutant run was killed, 1 when one survived or a catalogue entry is
stale, 2 on a usage error. Run from a source checkout (tests/ beside sashimi/).
"""

import argparse
import json
import sys
import time
from pathlib import Path

from sashimi.core.cli import Parser
from sashimi.harness import plan, selection
from sashimi.harness.catalogue import CATALOGUE
from sashimi.harness.markdown import markdown
from sashimi.harness.mutation import ROOT, environment, line_of, run_all, source_files


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(
        prog="python -m sashimi.mutate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--diff", metavar="REV", help="mutate the lines changed since git revision REV instead of running the catalogue"
    )
    parser.add_argument(
        "--list", action="store_true", help="print the catalogue with each entry's place or why it is stale, and exit"
    )
    parser.add_argument("--only", action="append", metavar="ID", help="run only this catalogue entry (repeatable)")
    parser.add_argument(
        "--budget",
        type=float,
        metavar="MINUTES",
        help="start no mutant after this many minutes, coverage included (default 10 with --diff, none for the "
        "catalogue)",
    )
    parser.add_argument(
        "--per-line", type=int, default=3, help="at most this many generated mutants per changed line (default 3)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="mutants run side by side, one core each (default 2)")
    parser.add_argument(
        "--no-gate", action="store_true", help="do not run the gate (sashimi.check) against each mutant"
    )
    parser.add_argument(
        "--fixtures", type=Path, help="published fixtures folder (default: the copy's own tests/published)"
    )
    parser.add_argument("--timeout", type=int, default=600, help="most seconds for one mutant's tests (default 600)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with a `mutants` list")
    parser.add_argument("--markdown", type=Path, help="also write the report as Markdown (docs/MUTATION.md)")
    args = parser.parse_args(argv)
    for flag, value in (("--timeout", args.timeout), ("--jobs", args.jobs), ("--per-line", args.per_line)):
        if value < 1:
            parser.error(f"{flag} must be at least 1{' second' if flag == '--timeout' else ''}; got {value}")
    if args.diff and args.only:
        parser.error("--only names catalogue entries; it cannot be combined with --diff")
    if args.budget is None and args.diff:
        args.budget = 10.0
    if args.budget is not None and args.budget <= 0:
        parser.error(f"--budget must be positive; got {args.budget}")
    unknown = set(args.only or []) - {m.id for m in CATALOGUE}
    if unknown:
        parser.error(f"unknown catalogue entries {sorted(unknown)}; see --list")
    return args


def list_catalogue() -> int:
    jobs, stale = plan.catalogue_jobs(ROOT)
    where = {j.id: f"{j.file}:{j.line}" for j in jobs}
    for m in CATALOGUE:
        place = where.get(m.id, f"STALE: {stale.get(m.id)}")
        print(f"{m.id:<36s} {place:<34s} {m.what}")
    print(f"{len(jobs)} entries anchored, {len(stale)} stale", file=sys.stderr)
    return 1 if stale else 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.list:
        return list_catalogue()
    if not (ROOT / "tests").is_dir():
        print("error: run from a source checkout: tests/ not found beside sashimi/", file=sys.stderr)
        return 2
    start = time.monotonic()
    skipped: list[plan.Skipped] = []
    stale: dict[str, str] = {}
    if args.diff:
        try:
            jobs, skipped = plan.diff_jobs(ROOT, args.diff, args.per_line)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        log(
            f"{len(jobs)} mutants on the lines of sashimi/ and reference/ changed since {args.diff}; {len(skipped)} "
            "lines marked skip"
        )
    else:
        jobs, stale = plan.catalogue_jobs(ROOT, args.only)
        for mutant_id, why in stale.items():
            log(f"STALE {mutant_id}: {why}")
    coverage = selection.Coverage()
    if jobs:
        include = sorted({j.file for j in jobs}) if args.diff else None
        try:
            coverage = selection.cached(
                ROOT, include, str(args.jobs), environment(ROOT, args.fixtures), log, source_files(), not args.no_gate
            )
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        log(f"coverage collected in {time.monotonic() - start:.0f} s ({len(coverage.tests)} tests)")
    startup = selection.startup_seconds(ROOT, environment(ROOT, args.fixtures), coverage)
    deadline = None if args.budget is None else start + 60 * args.budget
    results, unrun = run_all(
        jobs, coverage, args.fixtures, not args.no_gate, args.timeout, args.jobs, deadline, log, startup
    )
    minutes = (time.monotonic() - start) / 60
    killed = sum(r["killed"] for r in results)
    what = f"on the change since {args.diff}" if args.diff else "of the catalogue"
    summary = f"{killed} of {len(results)} mutants {what} killed"
    if unrun:
        summary += f"; {len(unrun)} not run: the budget of {args.budget:g} min was spent (cut short)"
    summary += f"; {len(skipped)} lines skipped; {len(stale)} stale entries; {minutes:.1f} min"
    if args.markdown:
        command = (
            "python -m sashimi.mutate"
            + (f" --diff {args.diff}" if args.diff else "")
            + "".join(f" --only {m}" for m in (args.only or []))
        )
        args.markdown.write_text(markdown(results, stale, command, minutes))
    if args.json:
        print(
            json.dumps(
                {
                    "summary": summary,
                    "minutes": round(minutes, 2),
                    "mutants": results,
                    "not_run": [{"file": j.file, "line": j.line, "operator": j.operator} for j in unrun],
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
        for mutant_id, why in stale.items():
            print(f"{mutant_id}: STALE: {why}")
        print(summary)
    return 1 if killed < len(results) or stale else 0


if __name__ == "__main__":
    sys.exit(main())

"""python -m sashimi.mutate: does the harness catch real bugs? A catalogue of realistic mutants.

Each mutant replaces one exact piece of `sashimi/` source (it must occur exactly once, or the
mutant is reported stale). It is applied alone, in a temporary copy of this checkout; there
the fast suite runs with `-x` (`pytest -x -m "not slow"`), and `python -m sashimi.check`
runs too. A mutant is killed when the suite fails; the report names the first failing test
and the first failing check. Run from a source checkout (tests/ beside sashimi/).
"""

import argparse
import json
import sys
from pathlib import Path

from sashimi.core.cli import Parser
from sashimi.harness.catalogue import CATALOGUE
from sashimi.harness.mutation import ROOT, markdown, run_mutant, verdict
from sashimi.harness.verdict import print_report


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m sashimi.mutate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    parser.add_argument("--only", action="append", help="run only this mutant (repeatable)")
    parser.add_argument("--jobs", default="2", help="pytest-xdist workers per mutant (default 2)")
    parser.add_argument("--no-check", action="store_true", help="skip running sashimi.check on each mutant")
    parser.add_argument("--fixtures", type=Path, help="published fixtures folder (default: the mutated tree's own tests/published)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per mutant run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--markdown", type=Path, help="also write the report as Markdown (docs/MUTATION.md)")
    args = parser.parse_args(argv)
    if args.timeout < 1:
        parser.error(f"--timeout must be at least 1 second; got {args.timeout}")
    if args.list:
        for m in CATALOGUE:
            print(f"{m.id:<26s} {m.file:<22s} {m.what}")
        return 0
    if not (ROOT / "tests").is_dir():
        print("error: run from a source checkout: tests/ not found beside sashimi/", file=sys.stderr)
        return 2
    chosen = [m for m in CATALOGUE if not args.only or m.id in args.only]
    unknown = set(args.only or []) - {m.id for m in CATALOGUE}
    if unknown:
        print(f"error: unknown mutant(s) {sorted(unknown)}; see --list", file=sys.stderr)
        return 2
    fixtures = args.fixtures if args.fixtures and args.fixtures.is_dir() else None
    results = []
    for i, mutant in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {mutant.id}: {mutant.what} ...", file=sys.stderr, flush=True)
        r = run_mutant(mutant, fixtures, args.jobs, not args.no_check, args.timeout)
        print(f"    {r['status']} by {r['killed_by']}; check: {r['check']} ({r['seconds']} s)", file=sys.stderr, flush=True)
        results.append(r)
    command = "python -m sashimi.mutate" + "".join(f" --only {m}" for m in (args.only or [])) + (" --no-check" if args.no_check else "")
    if args.markdown:
        args.markdown.write_text(markdown(results, command + f" --markdown {args.markdown}"))
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print_report([verdict(r) for r in results], what="mutants")
    survivors = [r for r in results if r["status"] != "killed"]
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())

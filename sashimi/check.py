"""python -m sashimi.check: the pre-merge regression gate.

Checks, in under two minutes on a CPU:
  specs      exact parameter counts and per-stage shapes against specs/; the optimizer contract
  golden     seeded float64 outputs of tiny 8-bit and 16-bit models (convolution logits, step
             logits, kernels, losses of a few training steps) and of the data path
             (quantization, clipping, metrics) against tests/golden/golden.npz
  identity   decoder slices, kernel cache after an in-place edit, token range, gradient clipping
  reference  the fast model against the float64 reference on a small random set
  published  the published-weights fixtures (--fixtures, SASHIMI_FIXTURES or tests/published);
             none found is a failure naming the folder (a skip with --allow-missing-fixtures,
             for the checkout's own folder only)
Prints each check with measured vs expected and pass/FAIL; exit status 1 on any failure.
--update-golden rewrites the golden file and prints what changed, so that an intended
change becomes a visible, reviewed diff.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from sashimi.core.cli import Parser
from sashimi.harness import gate, golden
from sashimi.harness.verdict import print_report


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="python -m sashimi.check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--update-golden", action="store_true", help="rewrite tests/golden/golden.npz and print what changed"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(gate.FAMILIES),
        metavar="FAMILY",
        help=f"run only this family of checks (repeatable; one of {', '.join(gate.FAMILIES)})",
    )
    parser.add_argument(
        "--fixtures",
        type=Path,
        help="folder of published fixtures (default: SASHIMI_FIXTURES or the checkout's tests/published)",
    )
    parser.add_argument(
        "--allow-missing-fixtures",
        action="store_true",
        help="a checkout without tests/published skips the published rows instead of failing them",
    )
    parser.add_argument(
        "-x", "--exitfirst", action="store_true", help="stop after the first family with a failing check"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.update_golden:
        golden.update_golden(golden.golden_outputs())
        return 0
    if not golden.GOLDEN.is_file():
        print(f"error: golden file {golden.GOLDEN} not found; create it with --update-golden", file=sys.stderr)
        return 2
    verdicts = gate.run(
        args.fixtures,
        args.only,
        log=lambda stage: print(
            f"check {stage} ({time.perf_counter() - start:.0f} s so far)",
            file=sys.stderr,
            flush=True,  # mutate: skip flush: when, not what
        ),
        allow_missing_fixtures=args.allow_missing_fixtures,
        exitfirst=args.exitfirst,
    )
    failed = [v for v in verdicts if v.failed]
    if args.json:
        print(
            json.dumps(
                {"ok": not failed, "seconds": time.perf_counter() - start, "checks": [v.as_dict() for v in verdicts]},
                indent=1,
            )
        )
    else:
        print_report(verdicts, seconds=time.perf_counter() - start)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

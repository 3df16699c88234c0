"""python -m sashimi.specs: the model's shapes and parameter counts, measured live, against the contract in specs/.

Prints the per-stage shape table (forward hooks on a small input) and the parameter
breakdown of the chosen preset and bit depth, then every spec as a verdict: measured vs
documented, pass / FAIL. The design note's approximate claims are reported (a claim that
does not hold is a `note`), never enforced. Exit status 0 iff every exact spec holds.
"""

import argparse
import json
import sys

import torch

from sashimi.core.cli import Parser
from sashimi.core.config import preset_names
from sashimi.harness.contract import print_report, report


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="python -m sashimi.specs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bits", type=int, choices=(8, 16), default=8)
    parser.add_argument("--preset", default="sc09", choices=preset_names())
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    def progress(message: str) -> None:
        print(f"specs {message}", file=sys.stderr, flush=True)  # mutate: skip flushing a progress line

    r = report(args.preset, args.bits, log=progress)
    if args.json:
        print(json.dumps(r, indent=1, default=str))
    else:
        print_report(r)
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

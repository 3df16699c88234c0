"""python -m sashimi.interop: load the published SaShiMi weights and check that we compute what it computes.

  check FIXTURE.npz [--json]   load the fixture's state dict into our backbone and compare our
                               float64 and float32 forward, float32 step mode and kernels with
                               the published float64 results (sidecar FIXTURE.json alongside)
  import STATE_DICT --config JSON --out CKPT
                               turn a published standalone state dict (.pt or .npz) into our checkpoint
"""

import argparse
import json
import sys
from pathlib import Path

from sashimi.harness.published import check
from sashimi.harness.verdict import print_report
from sashimi.io.checkpoint import CheckpointError
from sashimi.io.interop import InteropError, import_state_dict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sashimi.interop", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="compare against a published fixture (.npz + .json sidecar)")
    p_check.add_argument("fixture", type=Path)
    p_check.add_argument("--json", action="store_true")
    p_import = sub.add_parser("import", help="published state dict -> our checkpoint")
    p_import.add_argument("state_dict", type=Path)
    p_import.add_argument("--config", type=Path, required=True, help="JSON: the published constructor kwargs, or a sidecar holding them")
    p_import.add_argument("--out", type=Path, required=True)
    p_import.add_argument("--bits", type=int, choices=(8, 16), default=8, help="classes of the (freshly initialized) embedding and decoder")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            results = check(args.fixture)
            ok = not any(r.failed for r in results)
            if args.json:
                print(json.dumps({"fixture": str(args.fixture), "ok": ok, "checks": [r.as_dict() for r in results]}, indent=1))
            else:
                print_report(results)
            return 0 if ok else 1
        config = import_state_dict(args.state_dict, args.config, args.out, args.bits)
        print(f"wrote {args.out}: backbone from {args.state_dict} ({config}); embedding and decoder are freshly initialized "
              "(a published standalone state dict holds the backbone only)")
        return 0
    except (InteropError, CheckpointError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

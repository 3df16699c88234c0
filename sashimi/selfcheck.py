"""python -m sashimi.selfcheck: build an S4 layer, run it as a convolution and as a recurrence, print their
agreement."""

import sys
import time

import torch

from sashimi.core.cli import Parser
from sashimi.core.config import S4Options, check_number
from sashimi.harness.verdict import Verdict, print_report
from sashimi.model.rollout import rollout
from sashimi.model.s4 import S4Layer

BOUNDS = {torch.float64: 1e-10, torch.float32: 1e-4}


def agreement(H: int, L: int, dtype: torch.dtype, seed: int) -> float:
    """max |step - convolution| / max |convolution| of a fresh tied-state layer on random input."""
    torch.manual_seed(seed)
    layer = S4Layer(H, S4Options(n_ssm=1)).to(dtype)
    u = torch.randn(2, L, H, dtype=dtype)
    with torch.no_grad():
        y_conv = layer(u)
    return float((rollout(layer, u) - y_conv).abs().max() / y_conv.abs().max())


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m sashimi.selfcheck", description=__doc__)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        check_number("--channels", args.channels, 1, 4096)
        check_number("--length", args.length, 1, 10**6)
        check_number("--seed", args.seed, 0, 2**32 - 1)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    verdicts = []
    for dtype, bound in BOUNDS.items():
        start = time.perf_counter()
        err = agreement(args.channels, args.length, dtype, args.seed)
        precision = str(dtype).removeprefix("torch.")
        seconds = time.perf_counter() - start
        name = f"S4 layer H={args.channels} N=64 L={args.length} {precision} step vs convolution ({seconds:.1f} s)"
        passed = err <= bound  # mutate: skip an error equal to its bound to the last bit: no layer draws one
        verdicts.append(Verdict("selfcheck", name, f"rel diff {err:.2e}", f"<= {bound:.0e}", passed))
    return 0 if print_report(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())

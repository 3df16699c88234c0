"""python -m sashimi.selfcheck: build an S4 layer, run it as a convolution and as a recurrence, print their agreement."""

import argparse
import sys
import time

import torch

from sashimi.s4 import S4Layer


def agreement(H: int, L: int, dtype: torch.dtype, seed: int) -> float:
    torch.manual_seed(seed)
    layer = S4Layer(H, n_ssm=1).to(dtype)
    u = torch.randn(2, L, H, dtype=dtype)
    with torch.no_grad():
        y_conv = layer(u)
        layer.setup_step()
        state = layer.default_state(2)
        y_step = []
        for t in range(L):
            y, state = layer.step(u[:, t], state)
            y_step.append(y)
    return float((torch.stack(y_step, 1) - y_conv).abs().max() / y_conv.abs().max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sashimi.selfcheck", description=__doc__)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ok = True
    for dtype, bound in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        start = time.perf_counter()
        err = agreement(args.channels, args.length, dtype, args.seed)
        verdict = "ok" if err <= bound else "FAIL"
        ok &= err <= bound
        print(f"S4 layer H={args.channels} N=64 L={args.length} {str(dtype):14s} step vs convolution: "
              f"max relative difference {err:.2e} (bound {bound:.0e}) [{verdict}] in {time.perf_counter() - start:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""python -m sashimi.harness.drift: how far the float32 steps drift from the float64 convolution over
a sequence as long as `generate` runs.

A model with slow modes (every Delta at the bottom of the published init range, 1e-3: the modes
that decay least, so rounding in the state is forgotten most slowly) reads one random token sequence
teacher-forced, one position at a time, through each float32 step (the modules' own, the fused, the
native); the float64 convolution of the same model on the same tokens is the reference. The error at
a length L is max |log p_step - log p_conv| over the positions before L and every class. Rounding
in the recurrence accumulates at most linearly in the positions a mode remembers, so the row
`drift_float32` bounds it linearly in L: atol + rtol max|log p| max(L / 1024, 1), the length
entering as the case's condition (`tolerance_bound(..., condition=max(L / 1024, 1))`). The command
prints the error at every power of two and the exponent of its growth, fitted over the last seven.
"""

import argparse
import math
import sys
import time

import numpy as np
import torch

from sashimi.core.cli import Parser
from sashimi.core.config import ModelConfig
from sashimi.core.shapes import Float, Int, Tensor
from sashimi.harness.verdict import Verdict, print_report, tolerance_bound
from sashimi.model.fused import FusedStep
from sashimi.model.kernel import SSMKernel
from sashimi.model.lm import SashimiLM
from sashimi.model.native import NativeStep
from sashimi.model.native import available as native_available
from sashimi.model.native import reason as native_reason
from sashimi.model.rollout import rollout

ROW = "drift_float32"
UNIT = 1024  # the length at which the bound is (atol + rtol scale); it grows as L / UNIT
DT_MIN = 1e-3  # the bottom of the published init's range of Delta
STEPS = ("module", "fused", "native")
SMALL = ModelConfig(bits=8, d_model=12, n_layers=2, pool=[4, 4], expand=2, ff=2, n_ssm=1, d_state=16)


def slow_model(config: ModelConfig, seed: int) -> SashimiLM:
    """The model at its init (seeded), every Delta at DT_MIN, vector parameters moved off their init."""
    torch.manual_seed(seed)
    model = SashimiLM(config).double().eval()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, SSMKernel):
                exp = module.dt_transform == "exp"
                module.inv_dt.fill_(math.log(DT_MIN) if exp else math.log(math.expm1(DT_MIN)))
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(torch.from_numpy(rng.normal(0, 0.3, p.shape)))
    return model


def stepped(model: SashimiLM, x: Int[Tensor, "1 L"], how: str) -> Float[Tensor, "L C"]:
    """log p at every position of x through one float32 step."""
    model = model.float()
    with torch.no_grad():
        if how == "module":
            logits = rollout(model, x)[0]
        else:
            model.setup_step()
            step = FusedStep(model, 1) if how == "fused" else NativeStep(model, 1, threads=1)
            logits = torch.stack([step.step(x[:, t]) for t in range(x.shape[1])])[:, 0]
    return torch.log_softmax(logits.double(), -1)


def errors_by_length(model: SashimiLM, length: int, seed: int, steps=STEPS, progress=None) -> dict[str, list]:
    """{step: [max |d log p| over the first 2^k positions, k = 0 .. log2(length)]}, and "scale": the
    same running max of |log p| of the float64 convolution."""
    classes = model.config.n_classes  # which tokens drive the model (one class fewer) does not set its drift
    x = torch.from_numpy(np.random.default_rng(seed).integers(0, classes, (1, length)))  # mutate: skip the tokens
    with torch.no_grad():
        want = torch.log_softmax(model.double()(x)[0], -1)
    ends = [2**k for k in range(int(math.log2(length)) + 1)]

    def running(per_position: Tensor) -> list[float]:
        top = torch.cummax(per_position, 0).values
        return [float(top[end - 1]) for end in ends]

    out = {"length": ends, "scale": running(want.abs().amax(-1))}
    for how in steps:
        started = time.monotonic()
        out[how] = running((stepped(model, x, how) - want).abs().amax(-1))
        if progress:
            progress(f"{how} step: {length} positions in {time.monotonic() - started:.0f} s")
    return out


def growth(lengths: list[int], errors: list[float]) -> float:
    """The exponent a of error ~ L^a, least squares in log-log over the last seven powers of two
    (from L / 64: the first positions hold too few roundings to show a trend)."""
    start = max(2, lengths[-1] // 64)  # mutate: skip powers of two: / and // give one start (max 2 below 64)
    pairs = [(math.log(n), math.log(e)) for n, e in zip(lengths, errors) if n >= start and e > 0]
    if len(pairs) < 2:
        return math.nan
    x, y = np.array(pairs).T
    return float(np.polyfit(x, y, 1)[0])


def verdicts(measured: dict[str, list], steps=STEPS) -> list[Verdict]:
    """Each step against drift_float32 at every length: the worst share error / bound, and the growth."""
    out = []
    for how in steps:
        shares = [
            (e / tolerance_bound(ROW, scale=s, condition=max(n / UNIT, 1.0)), n, e)
            for n, e, s in zip(measured["length"], measured[how], measured["scale"])
        ]
        share, n, e = max(shares)
        a = growth(measured["length"], measured[how])
        out.append(
            Verdict(
                "drift",
                f"{how} step, float32, {measured['length'][-1]} positions",
                f"worst at L={n}: {e:.2e}, {1 / share if share else math.inf:.3g}x under the bound; growth L^{a:.2f}",
                f"within {ROW} (linear in L) at every length",
                share <= 1,
            )
        )
    return out


def make_parser() -> Parser:
    parser = Parser(
        prog="python -m sashimi.harness.drift",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--length", type=int, default=2**16, help="positions (a power of two; default 65536)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model and the tokens (default 0)")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), help="which steps (default all)")
    parser.add_argument(
        "--paper", action="store_true", help="the paper's model (ModelConfig()) instead of the small one"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    config = ModelConfig() if args.paper else SMALL
    frame = math.prod(config.pool)  # the model takes whole frames of its pools
    if args.length < frame or args.length & (args.length - 1):
        parser.error(f"--length must be a power of two of at least {frame} (the model's pools); got {args.length}")
    steps = args.steps
    skipped = []
    if "native" in steps and not native_available():
        steps = [s for s in steps if s != "native"]
        skipped.append(Verdict("drift", "native step", native_reason(), f"within {ROW}", None))
    torch.set_num_threads(1)  # mutate: skip the thread count moves the time, not the errors' size against the row
    started = time.monotonic()
    progress = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731  # mutate: skip progress text
    measured = errors_by_length(slow_model(config, args.seed), args.length, args.seed, steps, progress)
    print(f"model {config.to_dict()}, Delta {DT_MIN:g} everywhere, seed {args.seed}")
    print("L        " + "  ".join(f"{how:>9s}" for how in steps))
    for i, n in enumerate(measured["length"]):
        print(f"{n:<8d} " + "  ".join(f"{measured[how][i]:9.2e}" for how in steps))
    ok = print_report(verdicts(measured, steps) + skipped, "steps", seconds=time.monotonic() - started)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

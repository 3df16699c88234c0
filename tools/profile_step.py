"""Per-depth cost of generation's fused step (docs/PERFORMANCE.md, "Generation").

    python tools/profile_step.py [--batch 1] [--threads 1] [--no-compile] [--steps 1600]

Builds the paper's 8-bit model (preset sc09) at its init (C~ written by one forward of 16,000
samples, as training leaves it), prints the time `setup_step` takes to build the recurrence, cold
and again on unchanged weights, then microseconds per call of each
depth's function (`FusedStep.run`: depth 0 every sample, depth d every prod(pool[:d]) samples),
per whole `FusedStep.step` (all depths and the bookkeeping), per step of the native step
(`NativeStep`, what `generate` runs on a CPU; `--threads` split its rows) and per step of the
modules' own `SashimiLM.step`, for comparison. Absolute times drift with the machine's load.
"""

import argparse
import time

import torch

from sashimi.core.config import model_config
from sashimi.model.fused import FusedStep
from sashimi.model.lm import SashimiLM
from sashimi.model.native import NativeStep, available, reason


def per_call_us(fn, n: int) -> float:
    for _ in range(max(1, n // 20)):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-compile", action="store_true", help="time the eager depth functions")
    parser.add_argument("--steps", type=int, default=1600, help="calls timed per measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SashimiLM(model_config("sc09", 8)).eval()
    B, n = args.batch, args.steps
    with torch.no_grad():
        model(torch.zeros(1, 16000, dtype=torch.long))  # C -> C~ at the training length, as in a trained checkpoint
    with torch.inference_mode():
        start = time.perf_counter()
        model.setup_step()
        cold = time.perf_counter() - start
        start = time.perf_counter()
        model.setup_step()
        print(f"setup_step: {cold:.2f} s; again on unchanged weights {1e3 * (time.perf_counter() - start):.1f} ms")
        start = time.perf_counter()
        fused = FusedStep(model, B, compile=not args.no_compile)
        fused.warm_up()
        print(
            f"build and {'compile' if not args.no_compile else 'warm up'}: {time.perf_counter() - start:.1f} s (B = "
            f"{B}, {args.threads} thread(s))"
        )
        tokens = torch.zeros(B, dtype=torch.long)
        K = len(fused.pool)
        for d in range(K + 1):
            source = tokens if d == 0 else fused.buffers[d - 1]
            pending = fused.pending[d][:, :, 0] if d < K else None
            print(
                f"depth {d}: "
                f"{per_call_us(lambda d=d, s=source, p=pending: fused.run(d, s, p), max(1, n // 4**d)):8.1f} us per "
                "call"
            )
        print(f"fused step: {per_call_us(lambda: fused.step(tokens), n):8.1f} us per sample step")
        if available():
            stepper = NativeStep(model, B, args.threads)
            print(f"native step: {per_call_us(lambda: stepper.step(tokens, check=False), n):8.1f} us per sample step")
        else:
            print(f"native step: not available ({reason()})")
        state = model.default_state(B)

        def module_step():
            nonlocal state
            _, state = model.step(tokens, state)

        print(f"modules' step: {per_call_us(module_step, max(1, n // 4)):8.1f} us per sample step")


if __name__ == "__main__":
    main()

"""The native step against this CPU's ceilings (docs/PERFORMANCE.md, "Roofline of the native step").

    python tools/roofline.py [--preset sc09] [--steps 400]

1. Builds tools/roofline_probe.cpp with the native step's compiler and flags and prints this CPU's
   float32 FMA rate and read bandwidth (buffers of 16 KiB to 64 MiB) on 1 and 2 threads, and what
   an OpenMP barrier, a parallel region of 2 threads and the native step's own barrier cost.
2. Counts, from the model's own step layout (`FusedStep`'s specs, what the native step packs), the
   work of each depth of the U-Net: FLOPs (2 per weight of every linear; 24 per state entry of the
   recurrence: m . x, the update and y), and bytes read (float32: linear weights, the recurrence's
   ten coefficients per state entry, the state read and written), per call and per sample (a depth
   runs once every prod(pool[:d]) samples).
3. Times `NativeStep.step` at B = 1 and B = 16 on 2 threads and prints each beside its two floors:
   the FLOPs at the 2-thread FMA rate, and the bytes at the bandwidth of the level each depth's
   bytes fit in (at B = 1 they come back from where they were evicted to; see the docs).
4. Times one depth's call at B = 1 on one thread and on two as a team (native.TEAM_WIDTH's
   measurement): a model of each depth's width alone (no pool, the same blocks).
"""

import argparse
import math
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from sashimi.core.config import model_config, preset_names
from sashimi.model.fused import FusedStep
from sashimi.model.fused_layout import S4BlockSpec
from sashimi.model.lm import SashimiLM
from sashimi.model.native import FLAGS, NativeStep, compiler

PROBE = Path(__file__).with_name("roofline_probe.cpp")


def probe() -> tuple[dict, dict, list]:
    """({threads: GFLOP/s}, {(KiB, threads): GB/s}, [us an OpenMP barrier, a parallel region, the native
    barrier]) from the
    compiled probe."""
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "probe"
        flags = [f for f in FLAGS if f not in ("-shared", "-fPIC")]
        subprocess.run([compiler(), *flags, str(PROBE), "-o", str(binary)], check=True)
        lines = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout.split("\n")
    fma, read, sync = {}, {}, []
    for line in filter(None, lines):
        kind, *fields = line.split()
        if kind == "fma":
            fma[int(fields[0])] = float(fields[1])
        elif kind == "read":
            read[(int(fields[0]), int(fields[1]))] = float(fields[2])
        else:
            sync = [float(f) for f in fields]
    return fma, read, sync


def depth_costs(model: SashimiLM) -> list[dict]:
    """Per depth: width, period (samples per call), FLOPs and bytes of one call at B = 1, and the
    bytes that do not depend on the batch (weights and coefficients: read once per call)."""
    fused = FusedStep(model, 1)
    costs, period = [], 1
    for d, spec in enumerate(fused.specs):
        linears = [pair[0] for pair in (spec.down, spec.up, spec.decoder) if pair]
        coefficients = 0
        for block in spec.blocks:
            if isinstance(block, S4BlockSpec):
                linears.append(block.weight)
                coefficients += sum(math.prod(shape) for _, shape in block.coefficients)
            else:
                linears += [block.w1, block.w2]
        weights = sum(math.prod(shape) for _, shape in linears)
        states = coefficients // 10  # one complex state entry per ten coefficients
        costs.append(
            dict(
                depth=d,
                width=fused.widths[d],
                period=period,
                flops=2 * weights + 24 * states,
                shared_bytes=4 * (weights + coefficients),
                row_bytes=4 * 2 * 2 * states,  # real and imaginary parts, read and written
            )
        )
        if d < len(fused.pool):
            period *= fused.pool[d]
    return costs


def level(read: dict, nbytes: float, threads: int) -> tuple[str, float]:
    """The probe's read rate for a working set of nbytes (the smallest probed buffer that holds it)."""
    sizes = sorted({kib for kib, _ in read})
    kib = next((k for k in sizes if nbytes / threads <= k * 1024), sizes[-1])
    return f"{kib} KiB", read[(kib, threads)]


def step_us(model: SashimiLM, batch: int, threads: int, steps: int, team_width: int | None = None) -> float:
    step = NativeStep(model, batch, threads) if team_width is None else NativeStep(model, batch, threads, team_width)
    tokens = torch.zeros(batch, dtype=torch.long)
    for _ in range(steps // 4):
        step.step(tokens, check=False)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(steps):
            step.step(tokens, check=False)
        best = min(best, (time.perf_counter() - start) / steps * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="sc09", choices=preset_names())
    parser.add_argument("--steps", type=int, default=400, help="steps per timing (3 timings, the best kept)")
    args = parser.parse_args()
    fma, read, sync = probe()
    print(f"FMA, float32: {fma[1]:.1f} GFLOP/s on 1 thread, {fma[2]:.1f} on 2")
    print(
        f"2 threads: {sync[0]:.2f} us an OpenMP barrier, {sync[1]:.2f} us a parallel region, "
        f"{sync[2]:.2f} us the native step's barrier"
    )
    for (kib, threads), rate in sorted(read.items()):
        print(f"read {kib:>6} KiB per thread, {threads} thread(s): {rate:6.1f} GB/s")
    torch.manual_seed(0)
    model = SashimiLM(model_config(args.preset, 8)).eval()
    with torch.inference_mode():
        model.setup_step()
        costs = depth_costs(model)
        for batch in (1, 16):
            total_flops = total_floor = 0.0
            print(f"\nB = {batch}: per depth, per call (per sample: / period)")
            for c in costs:
                flops, nbytes = batch * c["flops"], c["shared_bytes"] + batch * c["row_bytes"]
                where, rate = level(read, nbytes, 2)
                compute_us, memory_us = flops / fma[2] / 1e3, nbytes / rate / 1e3
                print(
                    f"  depth {c['depth']} (width {c['width']}, every {c['period']}): {flops / 1e6:.2f} MFLOP, "
                    f"{nbytes / 1e6:.2f} MB (fits {where}: {rate:.1f} GB/s); floors {compute_us:.1f} us compute, "
                    f"{memory_us:.1f} us memory"
                )
                total_flops += flops / c["period"]
                total_floor += max(compute_us, memory_us) / c["period"]
            measured = step_us(model, batch, 2, args.steps)
            print(
                f"  per sample step: {total_flops / 1e6:.2f} MFLOP; floor {total_floor:.1f} us (each depth's larger "
                f"floor); measured {measured:.1f} us on 2 threads ({total_flops / measured / 1e3:.1f} GFLOP/s, "
                f"{100 * total_flops / measured / 1e3 / fma[2]:.0f}% of the FMA rate; floor / measured "
                f"{100 * total_floor / measured:.0f}%)"
            )
        print("\nB = 1, one depth's call (a model of its width alone): 1 thread, 2 threads as a team")
        for c in costs:
            alone = SashimiLM(model_config(args.preset, 8, d_model=c["width"], pool=[])).eval()
            alone.setup_step()
            steps = max(20, args.steps // c["period"])
            one, team = step_us(alone, 1, 1, steps), step_us(alone, 1, 2, steps, team_width=1)
            print(f"  width {c['width']}: {one:.1f} us, {team:.1f} us as a team")


if __name__ == "__main__":
    main()

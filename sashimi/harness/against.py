"""Ours against the official standalone SaShiMi (a checkout of state-spaces/s4), side by side in one run.

Both sides build the paper's 8-bit model (d_model 64, n_layers 8, pool [4, 4], expand 2, ff 2,
n_ssm 1, N 64; the official backbone wrapped in the same Embedding and Linear heads) and run the
same shapes. Every (side, case, thread count) runs in its own subprocess, alternating ours and
theirs, so neither inherits the other's caches or memory and drift on a shared machine hits both.
Cases: `fwd` (kernel recomputed), `fwd_bwd` (cross-entropy backward; the first call of the fresh
process, a training run's first step, reported apart from the median of the later ones),
`gen_b1` and `gen_b16` (the step loop with the sampling `generate` uses: temperature, top-p,
the inverse-CDF draw; ours is `sashimi.sampling.sample.sample` itself, as `generate` runs it: by
default the native step, else compiled once per process; setup of the recurrence timed apart),
and `gen_b1_busy` (gen_b1 while another process keeps one core busy: the share of its quiet
speed each side keeps).
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sashimi.harness.benchmark import log, peak_gib
from sashimi.harness.official import official_forward, official_generate, official_model

CASES = ("fwd", "fwd_bwd", "gen_b1", "gen_b16", "gen_b1_busy")
THREADS = {
    "fwd": (2,),
    "fwd_bwd": (2,),
    "gen_b1": (1, 2),
    "gen_b16": (1, 2),
    "gen_b1_busy": (1, 2),
}  # big ops want every core; step mode may not
BATCH = {"gen_b1": 1, "gen_b16": 16, "gen_b1_busy": 1}
# cases `run_child` also runs for `bench` alone (sashimi/harness/benchmark.py): our forward with the
# kernel cache warm (as evaluation runs it), the 16-bit model's chunked-loss training step and the
# training step under `train --precision bf16`
OURS_ONLY = ("fwd_cached", "fwd_bwd_16bit", "fwd_bwd_bf16")


def build(side: str, preset_name: str, bits: int, checkout: str | None):
    """(model, forward) of one side: the official standalone model behind our heads, or ours."""
    import torch

    if side == "official":
        model = official_model(Path(checkout), preset_name)
        return model, lambda x: official_forward(model, x)
    from sashimi.core.config import model_config
    from sashimi.model.lm import SashimiLM

    torch.manual_seed(0)
    model = SashimiLM(model_config(preset_name, bits))
    return model, model


def training_step(case: str, model, forward, tokens):
    """One timed call of a forward or training case (the model put in its mode here)."""
    import torch
    import torch.nn.functional as F

    from sashimi.model.kernel import kernel_cache  # ours caches the kernel in evaluation; `fwd` recomputes it

    if case in ("fwd", "fwd_cached"):
        model.eval()

        def once():
            with torch.no_grad(), kernel_cache(case == "fwd_cached"):
                forward(tokens)

        return once
    model.train()
    if case == "fwd_bwd":

        def once():
            model.zero_grad(set_to_none=True)
            F.cross_entropy(forward(tokens).flatten(0, 1), tokens.flatten()).backward()

        return once
    if case == "fwd_bwd_bf16":  # the loss `train --precision bf16` differentiates (fwd_bwd's work, in bf16)
        from sashimi.training.metrics import LossModel

        loss_model = LossModel(model, "bf16")

        def once():
            model.zero_grad(set_to_none=True)  # mutate: skip zeros or None: backward leaves the same gradients
            loss_model(tokens, tokens)[0].backward()

        return once
    from sashimi.training.metrics import chunked_options  # fwd_bwd_16bit: never the (B, L, 65536) logits

    options, head = chunked_options(), model.decoder.output_transform

    def once():
        model.zero_grad(set_to_none=True)
        features = model.features(tokens).flatten(0, 1)
        F.linear_cross_entropy(
            features, head.weight, tokens.flatten(), linear_bias=head.bias, options=options
        ).backward()

    return once


def generation(side: str, case: str, model, forward, tokens, gen_steps: int, compile, setups: list, extra: dict):
    """One timed call of a generation case: the cold setup (appended to `setups`) and `gen_steps`
    samples through each side's sampling. Ours first builds or compiles its step once, as
    `generate` does once per process (timed into `extra`)."""
    import torch

    batch = BATCH[case]
    model.eval()
    with torch.no_grad():
        forward(tokens[:, :64])  # the first forward writes C~ on both sides
    if side == "official":
        return lambda: setups.append(official_generate(model, batch, gen_steps))
    from sashimi.sampling.sample import sample, step_engine

    start = time.perf_counter()
    sample(model, batch, 16, compile=compile)
    extra["compile_s"] = time.perf_counter() - start
    extra["engine"] = step_engine(compile, torch.device("cpu"), torch.float32, gen_steps)

    def once():
        with (
            torch.no_grad()
        ):  # an in-place no-op makes the weights "changed": the cold setup is timed, as the official's
            for p in model.parameters():
                p.add_(0)
        start = time.perf_counter()
        with torch.inference_mode():
            model.setup_step()
        setups.append(time.perf_counter() - start)
        sample(model, batch, gen_steps, prepared=True, compile=compile)

    return once


def run_child(
    side: str,
    case: str,
    L: int,
    repeats: int,
    gen_steps: int,
    threads: int,
    checkout: str | None,
    compile: bool | str = "auto",
    preset_name: str = "sc09",
) -> dict:
    """Inside the child: build, warm up (full size), time `repeats` runs; times, setup and peak memory.
    The one runner of both `bench --against` (every case, either side) and `bench` (ours; OURS_ONLY
    adds its cases)."""
    import torch

    if side == "official" and case in OURS_ONLY:
        raise ValueError(f"case {case} times our model only")
    torch.set_num_threads(threads)
    bits = 16 if case == "fwd_bwd_16bit" else 8
    tokens = torch.randint(0, 2**bits, (1, L), generator=torch.Generator().manual_seed(0))
    model, forward = build(side, preset_name, bits, checkout)
    setups, extra = [], {}
    if case in BATCH:
        once = generation(side, case, model, forward, tokens, gen_steps, compile, setups, extra)
    else:
        once = training_step(case, model, forward, tokens)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    first, times = times[0], times[1:]  # the first run of a fresh process (a training run's first step) apart
    out = {
        "side": side,
        "case": case,
        "threads": threads,
        "times": times,
        "median_s": statistics.median(times),
        "first_s": first,
        "peak_gib": peak_gib(),
    }
    if setups:
        out["setup_s"] = statistics.median(setups[1:] or setups)
        out["median_s"] -= out["setup_s"]  # steady-state generation; setup reported apart
        out["samples_per_s"] = BATCH[case] * gen_steps / out["median_s"]
    return {**out, **extra}


def spawn(
    side, case, L, repeats, gen_steps, threads, checkout, compile: bool | str = "auto", preset_name: str = "sc09"
) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "sashimi.bench",
        "--child-against",
        json.dumps([side, case, L, repeats, gen_steps, threads, str(checkout), compile, preset_name]),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        raise RuntimeError(f"{side} {case} ({threads} threads) failed: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(
    checkout: Path,
    L: int,
    repeats: int,
    gen_steps: int,
    cases=CASES,
    compile: bool | str = "auto",
    preset_name: str = "sc09",
) -> dict:
    """Every case on both sides at each thread count, alternating; the best thread count per side.
    compile: as `sample` takes it (auto: the native step on a CPU; True: compiled; False: the modules'
    own step); `preset_name`:
    the model both sides build (the paper's sc09 by default)."""
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    results = {}
    for case in cases:
        for threads in THREADS[case]:
            for side in ("ours", "official"):
                log(f"{case}: {side}, {threads} thread(s) ...")
                # gen_b1_busy: another process keeps one core busy meanwhile (a shared machine)
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if case == "gen_b1_busy" else None
                try:
                    r = spawn(side, case, L, repeats, gen_steps, threads, checkout, compile, preset_name)
                finally:
                    if busy is not None:
                        busy.kill()
                        busy.wait()
                log(f"{case}: {side}, {threads} thread(s): median {r['median_s']:.3f} s, peak {r['peak_gib']:.2f} GiB")
                results.setdefault(case, {}).setdefault(side, []).append(r)
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[:3]
    summary = {
        "L": L,
        "repeats": repeats,
        "gen_steps": gen_steps,
        "compile": compile,
        "preset": preset_name,
        "load_before": load_before,
        "load_after": load_after,
        "cases": {},
    }
    for case, sides in results.items():
        best = {side: min(runs, key=lambda r: r["median_s"]) for side, runs in sides.items()}
        summary["cases"][case] = {
            "ours": best["ours"],
            "official": best["official"],
            "speedup": best["official"]["median_s"] / best["ours"]["median_s"],
            "memory_ratio": best["official"]["peak_gib"] / best["ours"]["peak_gib"],
        }
    if "gen_b1" in summary["cases"] and "gen_b1_busy" in summary["cases"]:
        for side in ("ours", "official"):  # the speed kept with one core taken, each side at its best
            kept = (
                summary["cases"]["gen_b1_busy"][side]["samples_per_s"]
                / summary["cases"]["gen_b1"][side]["samples_per_s"]
            )
            summary["cases"]["gen_b1_busy"][f"{side}_kept"] = kept
    return summary


def table(summary: dict) -> str:
    lines = [
        f"ours vs official standalone SaShiMi ({summary.get('preset', 'sc09')} 8-bit model, L = {summary['L']}, "
        f"medians of {summary['repeats']}; "
        f"generation: {summary['gen_steps']} steps, setup apart); load {summary['load_before']} -> "
        f"{summary['load_after']}",
        f"{'case':<10s} {'ours':>12s} {'official':>12s} {'speedup':>8s} {'peak ours':>10s} {'peak theirs':>12s}  "
        "threads (ours/theirs)",
    ]
    for case, c in summary["cases"].items():
        o, t = c["ours"], c["official"]
        if "samples_per_s" in o:
            a, b = f"{o['samples_per_s']:,.0f}/s", f"{t['samples_per_s']:,.0f}/s"
        else:
            a, b = f"{o['median_s']:.3f} s", f"{t['median_s']:.3f} s"
        lines.append(
            f"{case:<10s} {a:>12s} {b:>12s} {c['speedup']:>7.1f}x {o['peak_gib']:>8.2f} G {t['peak_gib']:>10.2f} G  "
            f"{o['threads']}/{t['threads']}"
            + (
                f"  (setup {o['setup_s']:.2f} s / {t['setup_s']:.2f} s; ours: {o['engine']} step, first call "
                f"{o['compile_s']:.1f} s)"
                if "setup_s" in o
                else ""
            )
            + (
                f"  (speed kept with one core busy: ours {c['ours_kept']:.0%}, official {c['official_kept']:.0%})"
                if "ours_kept" in c
                else ""
            )
            + (
                f"  (first call {o['first_s']:.2f} s / {t['first_s']:.2f} s: {o['first_s'] / o['median_s']:.1f}x / "
                f"{t['first_s'] / t['median_s']:.1f}x a later one)"
                if case == "fwd_bwd"
                else ""
            )
        )
    return "\n".join(lines)

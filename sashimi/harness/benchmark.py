"""Speed and memory of the paper's SaShiMi on this machine: one case per subprocess.

Preset sc09 (d_model 64, n_layers 8, pool [4, 4], expand 2, ff 2, n_ssm 1, N 64), 8-bit,
B = 1, all cores, shape checks off unless a case turns them on. Every case runs in a fresh
subprocess, so its peak resident memory (ru_maxrss of that process) is its own: model build,
warm-up and the timed runs. Times are medians after one warm-up run.
"""

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

from sashimi.harness.verdict import Verdict

PRESET = "sc09"
CASES = ("fwd", "fwd_cold", "fwd_bwd", "gen_b1", "gen_b16", "fwd_bwd_16bit", "fwd_bwd_checked", "fwd_bwd_bf16")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# bench's cases as `against.run_child` (the one runner) names them; fwd_bwd_checked is fwd_bwd in a
# child with SASHIMI_TYPECHECK=1 (`spawn`)
RUNNER_CASE = {
    "fwd": "fwd_cached",
    "fwd_cold": "fwd",
    "fwd_bwd": "fwd_bwd",
    "gen_b1": "gen_b1",
    "gen_b16": "gen_b16",
    "fwd_bwd_16bit": "fwd_bwd_16bit",
    "fwd_bwd_checked": "fwd_bwd",
    "fwd_bwd_bf16": "fwd_bwd_bf16",
}


def run_case(case: str, L: int, repeats: int, gen_steps: int) -> dict:
    """Inside the child: our side of `against.run_child` on all cores (one warm-up run, then
    `repeats` timed); times and peak memory, and for generation samples/s with the setup apart."""
    import torch

    from sashimi.harness.against import BATCH, run_child

    if case not in RUNNER_CASE:
        raise ValueError(f"unknown case {case!r}; choose one of {', '.join(CASES)}")
    r = run_child("ours", RUNNER_CASE[case], L, repeats, gen_steps, torch.get_num_threads(), None, "auto", PRESET)
    if "setup_s" not in r:
        return {"times": r["times"], "peak_gib": r["peak_gib"]}
    # the one generation figure: `sample()` as `generate` calls it, the recurrence's setup apart
    times = [t - r["setup_s"] for t in r["times"]]
    return {
        "times": times,
        "samples_per_s": [BATCH[case] * gen_steps / t for t in times],
        "peak_gib": r["peak_gib"],
        "setup_s": r["setup_s"],
    }


def spawn(case: str, L: int, repeats: int, gen_steps: int) -> dict:
    env = dict(os.environ)
    env.pop("SASHIMI_TYPECHECK", None)
    if case == "fwd_bwd_checked":
        env["SASHIMI_TYPECHECK"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "sashimi.bench",
        "--child",
        case,
        "--length",
        str(L),
        "--repeats",
        str(repeats),
        "--gen-steps",
        str(gen_steps),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"bench case {case} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(results: dict, L: int, repeats: int, gen_steps: int) -> dict:
    import torch

    med = {case: statistics.median(r["times"]) for case, r in results.items()}
    summary = {
        "fwd_s": med.get("fwd"),
        "fwd_cold_s": med.get("fwd_cold"),
        "fwd_bwd_s": med.get("fwd_bwd"),
        "fwd_peak_gib": results.get("fwd", {}).get("peak_gib"),
        "fwd_cold_peak_gib": results.get("fwd_cold", {}).get("peak_gib"),
        "fwd_bwd_peak_gib": results.get("fwd_bwd", {}).get("peak_gib"),
        "gen_b1_samples_per_s": statistics.median(results["gen_b1"]["samples_per_s"]) if "gen_b1" in results else None,
        "gen_b16_samples_per_s": statistics.median(results["gen_b16"]["samples_per_s"])
        if "gen_b16" in results
        else None,
        "fwd_bwd_16bit_s": med.get("fwd_bwd_16bit"),
        "fwd_bwd_16bit_peak_gib": results.get("fwd_bwd_16bit", {}).get("peak_gib"),
        "fwd_bwd_checked_s": med.get("fwd_bwd_checked"),
        "fwd_bwd_bf16_s": med.get("fwd_bwd_bf16"),
        "fwd_bwd_bf16_peak_gib": results.get("fwd_bwd_bf16", {}).get("peak_gib"),
        "check_overhead_pct": 100 * (med["fwd_bwd_checked"] / med["fwd_bwd"] - 1)
        if "fwd_bwd_checked" in med and "fwd_bwd" in med
        else None,
        "L": L,
        "B": 1,
        "repeats": repeats,
        "gen_steps": gen_steps,
        "preset": PRESET,
        "machine": {
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "load_avg_1m_at_end": os.getloadavg()[0],
        },
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "raw": results,
    }
    return summary


TARGETS = {
    "fwd_s": ("<=", 1.7),
    "fwd_cold_s": ("<=", 1.7),
    "fwd_bwd_s": ("<=", 10.0),
    "fwd_bwd_peak_gib": ("<=", 1.5),
    "gen_b1_samples_per_s": (">=", 1000),
    "gen_b16_samples_per_s": (">=", 6000),
    "fwd_bwd_16bit_peak_gib": ("<=", 2.0),
    "check_overhead_pct": ("<=", 10.0),
}


def verdicts(summary: dict) -> list[Verdict]:
    """One verdict per metric with a target (docs/PERFORMANCE.md says where each comes from)."""
    out = []
    for key, (op, bound) in TARGETS.items():
        value = summary.get(key)
        if value is None:
            continue
        passed = value <= bound if op == "<=" else value >= bound
        out.append(
            Verdict(
                "bench",
                key,
                f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}",
                f"{op} {bound}",
                passed,
                error=float(value),
                bound=float(bound),  # a target may be written as an int (1000)
            )
        )
    return out


def table(summary: dict) -> str:
    """Every measured metric, then the verdicts of those with a target."""
    lines = []
    for key in (
        "fwd_s",
        "fwd_cold_s",
        "fwd_peak_gib",
        "fwd_bwd_s",
        "fwd_bwd_peak_gib",
        "gen_b1_samples_per_s",
        "gen_b16_samples_per_s",
        "fwd_bwd_16bit_s",
        "fwd_bwd_16bit_peak_gib",
        "fwd_bwd_checked_s",
        "check_overhead_pct",
        "fwd_bwd_bf16_s",
        "fwd_bwd_bf16_peak_gib",
    ):
        value = summary.get(key)
        if value is not None and key not in TARGETS:
            lines.append(f"  {key:<26s} {value:.3f}" if abs(value) < 100 else f"  {key:<26s} {value:.0f}")
    lines += [v.line() for v in verdicts(summary)]
    m = summary["machine"]
    lines.append(
        f"B = 1, L = {summary['L']}, medians of {summary['repeats']}; {m['cores']} cores, torch {m['torch']}, "
        f"{summary['date']}"
    )
    return "\n".join(lines)

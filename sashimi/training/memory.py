"""How much memory a training step or an evaluation will need, checked before anything is allocated.

A run asked for more than the machine has would otherwise allocate until the operating system kills
it (and other jobs with it). The estimate counts, per (batch element, position), float32 activations:
the tokens, every residual block's checkpointed input at its stage's rate, one block's recomputed
activations (the FFT convolution dominates), and the logits with their gradient (8-bit) or one
chunk of them (16-bit, chunked loss). `MEASURED_FACTOR` scales it to peak resident memory measured
on this code (docs/PERFORMANCE.md, "Memory estimate"), so the estimate errs high.
"""

import os

import torch

from sashimi.core.config import LossConfig, ModelConfig
from sashimi.model.lm import SashimiLM

# measured peak RSS growth over the bare count below (`python tools/calibrate_memory.py`, B = 2):
# per added position 1.10x (tiny) and 1.77x (sc09); in total 1.8-3.5x, fixed overheads included
MEASURED_FACTOR = 2.0


def stage_widths(config: ModelConfig) -> list[tuple[int, int]]:
    """(channels, rate divisor) of every stage: the outer one, then each coarser one."""
    widths, H, rate = [(config.d_model, 1)], config.d_model, 1
    for p in config.pool:
        H, rate = H * config.expand, rate * p
        widths.append((H, rate))
    return widths


def bytes_per_position(config: ModelConfig, training: bool) -> float:
    """Float32 bytes per (batch element, position) before the measured factor."""
    blocks = config.n_layers * (2 if config.ff > 0 else 1)
    kept = sum(blocks * 2 * H / rate for H, rate in stage_widths(config))  # block inputs, stage skips, pool outputs
    recompute = max(40 * H / rate for H, rate in stage_widths(config))  # rfft/irfft buffers, GELU, linears of one block
    logits = 3 * config.n_classes if config.bits == 8 else 0  # logits, log-softmax, gradient
    per_position = 4 * (kept + recompute + logits) + 16  # + the int64 tokens x and y
    return per_position if training else 4 * (recompute + config.n_classes) + 16


def bare_bytes(config: ModelConfig, batch: int, seq_len: int, training: bool = True) -> int:
    """The count above for one step on `batch` clips of `seq_len` samples, plus the weights (training:
    weights, gradients and AdamW's two moments, 16 bytes a parameter; evaluation: 4)."""
    fixed = 3 * 4 * LossConfig.from_specs().batch_chunk_size * config.n_classes if config.bits == 16 else 0
    weights = (16 if training else 4) * SashimiLM(config).num_params()
    return int(batch * seq_len * bytes_per_position(config, training) + fixed + weights)


def estimate_bytes(config: ModelConfig, batch: int, seq_len: int, training: bool = True) -> int:
    """Estimated peak memory of one step: the bare count times the measured factor."""
    return int(MEASURED_FACTOR * bare_bytes(config, batch, seq_len, training))


def available_bytes(device: torch.device) -> int | None:
    """Free memory on the device: CUDA's free memory, or MemAvailable of /proc/meminfo (None when unknown)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def human(n: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PB"


def check_fits(
    config: ModelConfig, batch: int, seq_len: int, device: torch.device, what: str, flags: str, training: bool = True
) -> int:
    """Raise MemoryError naming the estimate, the limit and the flags to change when the step cannot fit."""
    return refuse_over_limit(
        estimate_bytes(config, batch, seq_len, training), device, f"{what} ({batch} x {seq_len} samples)", flags
    )


def refuse_over_limit(need: int, device: torch.device, what: str, flags: str) -> int:
    """Raise MemoryError naming the estimate `need`, the memory available (SASHIMI_MEMORY_LIMIT, in
    bytes, replaces it) and the flags to lower; returns `need` when it fits."""
    limit = available_bytes(device)
    override = os.environ.get("SASHIMI_MEMORY_LIMIT")
    if override:
        try:
            limit = int(float(override))  # mutate: skip a byte count compares the same as a float
        except ValueError:
            raise ValueError(f"SASHIMI_MEMORY_LIMIT must be a number of bytes; got {override!r}") from None
    if limit is not None and need > limit:
        raise MemoryError(
            f"{what} needs about {human(need)} of memory (estimate), more than the {human(limit)} available on "
            f"{device}: lower {flags}"
        )
    return need

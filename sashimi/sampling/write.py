"""Generated samples on disk: sampled in batches, sorted by log-likelihood (best first), decoded
with the checkpoint's quantization, written as 16-bit WAV with a waveform + spectrogram PNG."""

import math
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from sashimi.audio.quantize import decode
from sashimi.core.progress import progress_bar
from sashimi.core.shapes import Int, Tensor
from sashimi.io.plots import plot_sample
from sashimi.model.lm import SashimiLM
from sashimi.sampling.sample import sample


def generate_to_folder(
    model: SashimiLM, quantization: str, sample_rate: int, out: Path, n_samples: int, length: int, temperature: float = 1.0,
    top_p: float = 1.0, prefix: Int[Tensor, " P"] | None = None, batch_size: int = 16, seed: int = 0, log=print,
    compile: bool | str = "auto",
) -> list[Path]:
    """Sample, sort by log-likelihood, decode, write WAV + PNG per sample; returns the WAV paths.
    `compile`: as `sample`'s (the compiled step functions are reused by every batch)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokens, scores = [], []
    start = time.perf_counter()
    # the remaining time is spelled out ("ETA"): generation is the longest quiet stretch of `make run`
    bar_format = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps [{elapsed} elapsed, ETA {remaining}, {rate_fmt}]"
    with progress_bar(total=math.ceil(n_samples / batch_size) * length, unit="step", desc="generating", leave=False, bar_format=bar_format) as bar:
        for first in range(0, n_samples, batch_size):
            n = min(batch_size, n_samples - first)
            t, s = sample(model, n, length, temperature, top_p, prefix, seed + first, progress=bar, log=bar.write, compile=compile)
            tokens.append(t)
            scores.append(s)
    elapsed = time.perf_counter() - start
    tokens, scores = torch.cat(tokens), torch.cat(scores)
    log(f"generated {n_samples} x {length} samples in {elapsed:.1f} s: {n_samples * length / elapsed:,.0f} samples/s")
    written = []
    for rank, i in enumerate(scores.argsort(descending=True).tolist()):
        audio = decode(tokens[i], model.config.bits, quantization).numpy().astype(np.float32)
        path = out / f"sample_{rank:02d}_loglik_{scores[i]:.3f}.wav"
        sf.write(path, audio, sample_rate, subtype="PCM_16")
        plot_sample(audio, sample_rate, path.with_suffix(".png"), f"{path.name}: mean log-likelihood {scores[i]:.3f} nats")
        written.append(path)
    return written

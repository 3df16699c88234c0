"""Generated samples on disk: sampled in batches, sorted by log-likelihood (best first), decoded
with the checkpoint's quantization, written as 16-bit WAV with a waveform + spectrogram PNG.

Nothing is lost or mixed: a folder already holding samples is refused unless `overwrite` (which
replaces them); each WAV and its PNG appear together or not at all (written under hidden names,
then renamed); a write error names the file; Ctrl-C keeps the batches finished so far.
"""

import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from sashimi.audio.quantize import decode
from sashimi.core.progress import progress_bar
from sashimi.core.shapes import Float, Int, Tensor
from sashimi.io.plots import plot_sample
from sashimi.model.lm import SashimiLM
from sashimi.sampling.sample import Interrupted, sample
from sashimi.training import memory

SAMPLE_GLOB = "sample_*_loglik_*"
PARTIAL_GLOB = "partial_*_loglik_*"  # samples in progress when Ctrl-C stopped generation, cut there
# bytes a kept per-step tensor costs beyond its data (the tensor object and its allocation); two are
# kept per step of a batch until the batch is stacked. Measured: `sample` of the tiny model grew peak
# RSS by 39.5 MB over 30,000 steps at B = 1 (1.3 KB a step) and 12.5 MB over 5,000 at B = 16; with
# 1 KB a tensor the estimate is 62 MB and 12.9 MB, so it errs high
TENSOR_OVERHEAD = 1024  # mutate: skip a measured approximation (1.3 KB a step); a byte either way is noise


def prepare_folder(out: Path, overwrite: bool = False) -> Path:
    """`out`, created if missing and checked writable before any sampling; one already holding
    generated samples is refused unless `overwrite`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: give a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise OSError(
            f"cannot write into the output folder {out}: {e.strerror or e}; give a writable folder with --out"
        ) from None
    earlier = sorted([*out.glob(SAMPLE_GLOB + ".wav"), *out.glob(PARTIAL_GLOB + ".wav")])
    if earlier and not overwrite:
        raise ValueError(
            f"--out {out} already holds {len(earlier)} generated samples ({earlier[0].name}, ...): "
            "give a new folder, or --overwrite to replace them"
        )
    return out


def generation_bytes(
    model: SashimiLM, n_samples: int, length: int, prefix_length: int = 0, batch_size: int = 16
) -> int:
    """Estimated peak memory of `generate_to_folder`: the recurrent state and the per-step logits of
    one batch, the tokens and log-likelihoods kept per step of that batch, and every batch's tokens
    (listed, then concatenated: twice) with their decoded float32 audio at write time."""
    n = min(batch_size, n_samples)  # mutate: skip min is symmetric
    state = sum(t.numel() * t.element_size() for t in _tensors(model.default_state(1)))
    steps = prefix_length + length
    batch = n * state + 6 * 4 * n * model.config.n_classes + length * (2 * TENSOR_OVERHEAD + 16 * n)
    kept = n_samples * steps * (2 * 8 + 4)
    return batch + kept


def _tensors(state):
    if isinstance(state, torch.Tensor):
        yield state
    elif isinstance(state, dict):
        for v in state.values():
            yield from _tensors(v)
    elif isinstance(state, (list, tuple)):
        for v in state:
            yield from _tensors(v)


def check_generation_fits(
    model: SashimiLM,
    n_samples: int,
    length: int,
    prefix_length: int,
    batch_size: int,
    flags: str = "--n-samples, --seconds/--length or --batch-size",
) -> int:
    """MemoryError naming the estimate and the flags to lower when generation cannot fit."""
    device = next(model.parameters()).device
    need = generation_bytes(model, n_samples, length, prefix_length, batch_size)
    return memory.refuse_over_limit(
        need,
        device,
        f"generating {n_samples} x {prefix_length + length:,} samples (batches of {batch_size})",
        flags,
    )


def write_pair(audio: Float[np.ndarray, " L"], sample_rate: int, wav: Path, title: str) -> Path:
    """The WAV and its PNG, both or neither: each written under a hidden name, then renamed (PNG
    first, so a WAV never stands without its picture); an error names the file being written."""
    png = wav.with_suffix(".png")
    path, tmp_png = wav.with_name(f".{wav.stem}.partial.wav"), wav.with_name(f".{wav.stem}.partial.png")
    tmp_wav = path
    current = wav
    try:
        sf.write(path, audio, sample_rate, subtype="PCM_16")  # mutate: skip also soundfile's default for WAV
        current = png
        plot_sample(audio, sample_rate, tmp_png, title)
        os.replace(tmp_png, png)
        current = wav
        os.replace(tmp_wav, wav)
    except (OSError, RuntimeError) as e:  # soundfile reports a failed write as a RuntimeError
        _discard(tmp_wav, tmp_png, png if current == wav else None)
        reason = (
            e.strerror
            if isinstance(e, OSError) and e.strerror
            else (str(e).splitlines()[0] if str(e) else type(e).__name__)
        )
        raise OSError(f"cannot write {current}: {reason}") from None
    except BaseException:
        _discard(tmp_wav, tmp_png, png if current == wav else None)
        raise
    return wav


def _discard(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            path.unlink(missing_ok=True)


def write_samples(
    tokens: Int[Tensor, "B T"],
    scores: Float[Tensor, " B"],
    model: SashimiLM,
    quantization: str,
    sample_rate: int,
    out: Path,
    overwrite: bool,
    stem: str = "sample",
) -> list[Path]:
    """Every sample as WAV + PNG, named `stem`_rank_loglik_..., best first; with `overwrite`, the
    folder's earlier samples (finished and partial) are removed first (never mixed with these)."""
    if overwrite:
        _discard(
            *(p for glob in (SAMPLE_GLOB, PARTIAL_GLOB) for p in out.glob(glob + ".*") if p.suffix in (".wav", ".png"))
        )
    written = []
    for rank, i in enumerate(scores.argsort(descending=True).tolist()):
        audio = decode(tokens[i], model.config.bits, quantization).numpy().astype(np.float32)
        path = out / f"{stem}_{rank:02d}_loglik_{scores[i]:.3f}.wav"
        written.append(write_pair(audio, sample_rate, path, f"{path.name}: mean log-likelihood {scores[i]:.3f} nats"))
    return written


def keep_interrupted(
    stop: KeyboardInterrupt,
    tokens: list,
    scores: list,
    n_samples: int,
    length: int,
    model,
    quantization: str,
    sample_rate: int,
    out: Path,
    overwrite: bool,
    log,
) -> None:
    """Ctrl-C: the batches finished so far as samples, and the batch in progress (when `sample` says
    how far it got) as partial_* samples, cut where they stopped; then say what was kept."""
    done = sum(len(s) for s in scores)
    finished = (
        write_samples(torch.cat(tokens), torch.cat(scores), model, quantization, sample_rate, out, overwrite)
        if done
        else []
    )
    cut = stop if isinstance(stop, Interrupted) and stop.done else None
    partial = (
        write_samples(cut.tokens, cut.loglik, model, quantization, sample_rate, out, overwrite and not done, "partial")
        if cut
        else []
    )
    kept = [f"the {done} of {n_samples} samples finished so far ({finished[0].name}, ...)"] if done else []
    if cut:
        kept.append(f"the {len(partial)} in progress, cut at {cut.done:,} of {length:,} steps ({partial[0].name}, ...)")
    log(
        f"interrupted: kept {' and '.join(kept)} in {out}"
        if kept
        else f"interrupted before any sample: nothing written to {out}"
    )


def generate_to_folder(
    model: SashimiLM,
    quantization: str,
    sample_rate: int,
    out: Path,
    n_samples: int,
    length: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    prefix: Int[Tensor, " P"] | None = None,
    batch_size: int = 16,
    seed: int = 0,
    log=print,
    compile: bool | str = "auto",
    overwrite: bool = False,
) -> list[Path]:
    """Sample, sort by log-likelihood, decode, write WAV + PNG per sample; returns the WAV paths.
    Each sample holds the prefix (if any) followed by `length` generated samples.
    `compile`: as `sample`'s (the compiled step functions are reused by every batch). Ctrl-C
    writes the batches finished so far, says so, and raises KeyboardInterrupt again."""
    n_prefix = 0 if prefix is None else prefix.shape[0]
    need = check_generation_fits(model, n_samples, length, n_prefix, batch_size)
    out = prepare_folder(out, overwrite)
    batches = math.ceil(n_samples / batch_size)
    log(
        f"generating {n_samples} x {length:,} samples in {batches} batch{'es' if batches > 1 else ''} of up to "
        f"{batch_size}: "
        f"about {memory.human(need)} of memory (estimate); the bar below shows the time left"
    )
    tokens, scores = [], []
    start = time.perf_counter()
    # the remaining time is spelled out ("ETA"): generation is the longest quiet stretch of `make run`
    bar_format = (
        "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps [{elapsed} elapsed, ETA {remaining}, {rate_fmt}]"
    )
    try:
        with progress_bar(
            total=math.ceil(n_samples / batch_size) * length,
            unit="step",
            desc="generating",
            leave=False,  # mutate: skip whether the finished bar stays on screen
            bar_format=bar_format,
        ) as bar:
            for first in range(0, n_samples, batch_size):
                n = min(batch_size, n_samples - first)
                t, s = sample(
                    model,
                    n,
                    length,
                    temperature,
                    top_p,
                    prefix,
                    seed + first,
                    progress=bar,
                    log=bar.write,
                    compile=compile,
                )
                tokens.append(t)
                scores.append(s)
    except KeyboardInterrupt as stop:
        keep_interrupted(stop, tokens, scores, n_samples, length, model, quantization, sample_rate, out, overwrite, log)
        raise
    elapsed = time.perf_counter() - start
    after = f" after the {n_prefix}-sample prefix (each WAV holds {n_prefix + length})" if n_prefix else ""
    log(
        f"generated {n_samples} x {length} samples{after} in {elapsed:.1f} s: {n_samples * length / elapsed:,.0f} "
        "samples/s"
    )
    return write_samples(torch.cat(tokens), torch.cat(scores), model, quantization, sample_rate, out, overwrite)

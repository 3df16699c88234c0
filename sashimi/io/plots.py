"""Pictures of a run: the loss curve, and a sample's waveform with its spectrogram (matplotlib, Agg)."""

import json
import math
import warnings
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_losses(metrics_path: Path, out: Path) -> Path:
    """Training and validation loss against the step, from a run's metrics.jsonl."""
    plt = _pyplot()
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]
    val = [(r["step"], r["loss"]) for r in records if r["kind"] == "validation"]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train", alpha=0.6)
    if val:
        ax.plot(*zip(*val), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per sample)")
    ax.set_title("SaShiMi training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_sample(audio: np.ndarray, sample_rate: int, path: Path, title: str) -> Path:
    """Waveform over spectrogram of one generated sample."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 5))
    a.plot(np.arange(len(audio)) / sample_rate, audio, linewidth=0.5)
    a.set_xlabel("time (s)")
    a.set_ylabel("amplitude")
    a.set_title(title)
    nfft = int(min(512, 2 ** max(4, int(math.log2(max(len(audio), 16))) - 1)))
    with (
        warnings.catch_warnings()
    ):  # a sample shorter than a few windows, or silent, makes matplotlib warn about its own choices
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        b.specgram(audio, NFFT=nfft, Fs=sample_rate, noverlap=3 * nfft // 4, cmap="magma")
    b.set_xlabel("time (s)")
    b.set_ylabel("frequency (Hz)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()  # mutate: skip where the axes sit in the PNG, nothing a test reads
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

"""The embedded synthetic corpus: plucked strings, chirps and formant vowels, made in code
(offline, deterministic), for the default training run and for tests.

The corpus is many short clips from narrow parameter ranges, so that the validation clips are
like the training ones: the default run then learns what generalizes (a periodic waveform goes
on with its period) instead of memorizing a few clips (README, `python -m sashimi.train`)."""

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from sashimi.core.config import default_sample_rate
from sashimi.core.shapes import Float


def karplus_strong(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Plucked string: y[t] = burst[t] + (d/2)(y[t-P] + y[t-P-1]), P = round(rate / f0), a noise
    burst of P samples; f0 in [100, 400] Hz, d in [0.995, 0.999] (a slow decay)."""
    f0 = rng.uniform(100.0, 400.0)
    P = max(2, int(round(sample_rate / f0)))
    decay = rng.uniform(0.995, 0.999)
    burst = np.zeros(n)
    burst[:P] = rng.uniform(-1.0, 1.0, min(P, n))
    a = np.zeros(P + 2)
    a[0], a[P], a[P + 1] = 1.0, -decay / 2, -decay / 2
    from scipy import signal  # here, not at the top: importing scipy.signal takes ~3 s

    return signal.lfilter([1.0], a, burst)


def chirp(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """A sweep f0 -> f1, each in [100, 1500] Hz (below 0.45 rate), linear or logarithmic, under a
    raised-cosine (Tukey) envelope."""
    t = np.arange(n) / sample_rate
    f0, f1 = rng.uniform(100.0, min(1500.0, 0.45 * sample_rate), 2)
    method = rng.choice(["linear", "logarithmic"])
    from scipy import signal  # here, not at the top: importing scipy.signal takes ~3 s

    return signal.chirp(t, f0, t[-1], f1, method=method) * signal.windows.tukey(n, 0.2)


FORMANTS = {
    "a": (730, 1090, 2440),
    "e": (530, 1840, 2480),
    "i": (270, 2290, 3010),
    "o": (570, 840, 2410),
    "u": (300, 870, 2240),
}  # mutate: skip 1 Hz moved is inside the +-5% each vowel draws


def vowel(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """A pulse train at pitch f0 in [90, 260] Hz (5% vibrato at 3-6 Hz) through three damped
    resonators at one vowel's formants (each moved by up to 5%), summed."""
    from scipy import signal  # here, not at the top: importing scipy.signal takes ~3 s

    f0 = rng.uniform(90.0, 260.0) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(3, 6) * np.arange(n) / sample_rate))
    phase = np.cumsum(f0 / sample_rate)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    out = np.zeros(n)
    for gain, F in zip((1.0, 0.5, 0.25), FORMANTS[rng.choice(list(FORMANTS))], strict=True):
        r = np.exp(-np.pi * rng.uniform(60.0, 120.0) / sample_rate)
        theta = 2 * np.pi * F * rng.uniform(0.95, 1.05) / sample_rate
        out += gain * signal.lfilter([1.0 - r], [1.0, -2 * r * np.cos(theta), r * r], pulses)
    return out * signal.windows.tukey(n, 0.3)


SYNTHS = {"pluck": karplus_strong, "chirp": chirp, "vowel": vowel}


# the default run's corpus: 72 s in all, in clips short enough that it spans many pitches
N_CLIPS, SECONDS = 144, 0.5


def synthetic_dataset(
    n_clips: int = N_CLIPS,
    seconds: float = SECONDS,
    sample_rate: int | None = None,
    seed: int = 0,  # mutate: skip any seed draws such a corpus
) -> list[Float[np.ndarray, " L"]]:
    """n_clips float32 clips cycling through plucked strings, chirps and vowels, peak in [0.3, 0.9].

    Clip i depends only on (seed, i): offline, deterministic, independent of n_clips. The sample
    rate defaults to the default preset's."""
    sample_rate = sample_rate or default_sample_rate()
    n = int(round(seconds * sample_rate))
    if n < 2:
        raise ValueError(f"clips need at least 2 samples; got seconds={seconds} at {sample_rate} Hz")
    clips = []
    for i in range(n_clips):
        rng = np.random.default_rng([seed, i])
        clip = list(SYNTHS.values())[i % len(SYNTHS)](rng, n, sample_rate)
        peak = np.max(np.abs(clip))
        clips.append((clip * rng.uniform(0.3, 0.9) / (peak if peak > 0 else 1.0)).astype(np.float32))
    return clips


def write_synthetic_dataset(
    folder: str | os.PathLike,
    n_clips: int = N_CLIPS,
    seconds: float = SECONDS,
    sample_rate: int | None = None,
    seed: int = 0,  # mutate: skip any seed draws such a corpus
) -> list[Path]:
    """synthetic_dataset(...) written as 16-bit PCM WAV files `{i:03d}_{kind}.wav` into `folder`.

    The index comes first so that files sorted by name alternate the kinds: a validation that
    reads only its first batches (--eval-batches) still sees every kind."""
    sample_rate = sample_rate or default_sample_rate()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kinds = list(SYNTHS)
    paths = []
    for i, clip in enumerate(synthetic_dataset(n_clips, seconds, sample_rate, seed)):
        path = folder / f"{i:03d}_{kinds[i % len(kinds)]}.wav"
        sf.write(path, clip, sample_rate, subtype="PCM_16")
        paths.append(path)
    return paths

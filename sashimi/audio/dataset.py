"""Audio datasets: folders of .wav/.flac files -> (x, y) token clips (docs/DESIGN.md, "Clips and targets").

Each file is one example: it is mixed down to mono, resampled to the target
rate, min-max scaled and quantized as a whole (as for SC09-style 1-s clips),
then cut into clips of L samples. A clip with tokens q_0 .. q_{n-1} (n <= L;
only a file's last clip is shorter) gives

    x = [z, q_0, ..., q_{n-2}, z, ..., z]          (z = 2^(bits-1), the zero level)
    y = [q_0, ..., q_{n-1}, -100, ..., -100]      (-100: ignored by the loss)

so the model reading x[:t+1] predicts y[t] = q_t.
"""

import hashlib
import math
import os
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from sashimi.audio.quantize import check_bits, check_method, encode, zero_level
from sashimi.core.config import SAMPLE_RATE_RANGE, default_sample_rate
from sashimi.core.shapes import Float, Int, Tensor

AUDIO_SUFFIXES = (".wav", ".flac")
SPLITS = ("train", "validation", "test")
IGNORE_INDEX = -100


class AudioFileError(ValueError):
    """An audio file that cannot be read, or holds no usable samples."""


class EmptySplitError(ValueError):
    """No audio file of the folder falls in the split asked for."""


class AudioNotice(UserWarning):
    """A file was changed on loading (channels mixed down, resampled) or skipped."""


def list_audio_files(folder: str | os.PathLike) -> list[Path]:
    """Every .wav and .flac file (suffix in any case) under `folder`, recursively, sorted by path;
    a name that is not UTF-8 is skipped with a notice (it cannot be logged, hashed or stored)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"audio folder {folder} does not exist or is not a folder")
    files = []
    for p in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
        try:
            os.fsdecode(os.fsencode(p)).encode("utf-8")  # a name that is not UTF-8 holds lone surrogates
        except UnicodeEncodeError:
            warnings.warn(f"skipping {os.fsencode(p)!r}: its name is not UTF-8; rename it", AudioNotice, stacklevel=2)
            continue
        files.append(p)
    if not files:
        raise ValueError(f"no .wav or .flac files under {folder}")
    return files


def folder_fingerprint(folder: str | os.PathLike) -> dict:
    """The audio files under `folder` as {"files": count, "sha256": of their relative paths and
    sizes}: what a resumed run checks to be reading the files it was trained on."""
    folder = Path(folder)
    digest = hashlib.sha256()
    files = list_audio_files(folder)
    for path in files:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\n".encode())
    return {"files": len(files), "sha256": digest.hexdigest()}


def load_audio(path: str | os.PathLike, sample_rate: int) -> Float[np.ndarray, " L"]:
    """Mono float32 samples of `path` at `sample_rate`: channels averaged, other rates resampled
    (scipy.signal.resample_poly). Each change is reported by one AudioNotice warning naming the file."""
    if not os.path.isfile(path):  # soundfile would say only "System error."
        raise AudioFileError(
            f"audio file {path} does not exist" if not os.path.exists(path) else f"{path} is not a file"
        )
    try:
        audio, rate = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError, EOFError) as err:
        raise AudioFileError(f"cannot read audio file {path}: {err}") from err
    low, high = SAMPLE_RATE_RANGE
    if not low <= rate <= high:
        raise AudioFileError(
            f"audio file {path}: its header says {rate:,} Hz, outside {low:,}-{high:,} Hz (a corrupt header, or not "
            "audio)"
        )
    if audio.shape[0] == 0:
        raise AudioFileError(f"audio file {path} holds no samples")
    if not np.isfinite(audio).all():
        raise AudioFileError(f"audio file {path} holds non-finite samples")
    if audio.shape[1] > 1:
        warnings.warn(f"{path}: {audio.shape[1]} channels mixed down to mono (mean)", AudioNotice, stacklevel=2)
    audio = audio.mean(axis=1, dtype=np.float32)
    if rate != sample_rate:
        warnings.warn(f"{path}: resampled from {rate} Hz to {sample_rate} Hz", AudioNotice, stacklevel=2)
        g = math.gcd(rate, sample_rate)
        from scipy import signal  # here, not at the top: importing scipy.signal takes ~3 s, most files need none

        audio = signal.resample_poly(audio, sample_rate // g, rate // g)
    return np.ascontiguousarray(audio, dtype=np.float32)


def split_of(path: str | os.PathLike, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """ "train", "validation" or "test": u = sha256(file name) as a number in [0, 1) against the
    cumulative `fractions`, so a file keeps its split wherever its folder lives."""
    if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0):
        raise ValueError(
            f"fractions must be three non-negative numbers (train, validation, test) summing to 1; got {fractions}"
        )
    digest = hashlib.sha256(Path(path).name.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "validation"
    return "test"


def clip_pair(tokens: Int[Tensor, " n"], L: int, zero: int) -> tuple[Int[Tensor, " L"], Int[Tensor, " L"]]:
    """(x, y) of one clip of n <= L tokens: y = tokens padded with -100, x = [z, tokens[:-1]] padded with z."""
    n = tokens.shape[0]
    y = torch.full((L,), IGNORE_INDEX, dtype=torch.long)
    x = torch.full((L,), zero, dtype=torch.long)
    y[:n] = tokens
    x[1:n] = tokens[: n - 1]
    return x, y


class AudioDataset(torch.utils.data.Dataset):
    """The clips of the files of one split under `folder`, as (x, y) token pairs of length seq_len.

    All files are loaded and quantized at construction (per-file min-max) and kept as
    int16 (8-bit) or int32 (16-bit) tokens. Unreadable files are skipped with a warning.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        split: str | None,
        seq_len: int,
        bits: int,
        quantization: str,
        sample_rate: int | None = None,
    ):
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None (every file); got {split!r}")
        if seq_len < 1:
            raise ValueError(f"seq_len must be at least 1; got {seq_len}")
        check_bits(bits)
        check_method(quantization)
        sample_rate = sample_rate or default_sample_rate()
        self.split, self.seq_len, self.bits, self.quantization, self.sample_rate = (
            split,
            seq_len,
            bits,
            quantization,
            sample_rate,
        )
        self.zero = zero_level(bits)
        candidates = [p for p in list_audio_files(folder) if split is None or split_of(p) == split]
        what = "audio" if split is None else f"{split!r} split"
        if not candidates:
            raise EmptySplitError(f"no {what} files under {folder}")
        self.files: list[Path] = []
        self.tokens: list[np.ndarray] = []
        storage = np.int16 if bits == 8 else np.int32
        for path in candidates:
            try:
                audio = load_audio(path, sample_rate)
            except AudioFileError as err:
                warnings.warn(f"skipping {path}: {err}", AudioNotice, stacklevel=2)
                continue
            self.files.append(path)
            self.tokens.append(encode(torch.from_numpy(audio), bits, quantization).numpy().astype(storage))
        if not self.files:
            raise ValueError(f"none of the {len(candidates)} {what} files under {folder} could be read")
        self.clips = [(f, start) for f, t in enumerate(self.tokens) for start in range(0, len(t), seq_len)]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[Int[Tensor, " L"], Int[Tensor, " L"]]:
        f, start = self.clips[index]
        tokens = torch.from_numpy(self.tokens[f][start : start + self.seq_len].astype(np.int64))
        return clip_pair(tokens, self.seq_len, self.zero)

"""Generation streamed as it is made: one sample's 16-bit PCM written while it is being drawn.

`generate --stream OUT.wav` writes into a WAV that grows as the sample is generated; its header is
rewritten after every chunk, so the file is a valid WAV at every moment (Ctrl-C, a crash or a kill
leave the audio written so far, playable). `--stream -` writes raw 16-bit little-endian mono PCM to
stdout for a player (`| aplay -f S16_LE -r RATE -c 1`). A chunk is CHUNK_SECONDS of audio: the
latency it adds stays far below what a listener hears, and its write costs a small share of the
steps it holds.
"""

import contextlib
import functools
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sashimi.audio.quantize import decode
from sashimi.core.progress import progress_bar
from sashimi.core.shapes import Float, Int, Tensor
from sashimi.model.lm import SashimiLM
from sashimi.sampling.sample import sample

CHUNK_SECONDS = 0.01
STDOUT = "-"
HEADER_BYTES = 44  # RIFF, fmt and data chunk headers of a plain PCM WAV


def pcm16(audio: Float[np.ndarray, " L"]) -> Int[np.ndarray, " L"]:
    """Audio as the 16-bit PCM libsndfile writes for it as float32 (and so `generate`'s WAVs):
    floor(32768 x), clipped to the 16-bit range (measured with libsndfile 1.2.2 over every level of
    both quantizations and a million random values: tests/sampling/test_stream.py)."""
    scaled = np.floor(np.asarray(audio, np.float32) * np.float32(32768))  # exact: a power of two
    return np.clip(scaled, -32768, 32767).astype("<i2")


def wav_header(sample_rate: int, frames: int) -> bytes:
    """The 44-byte header of a mono 16-bit PCM WAV holding `frames` samples."""
    data = 2 * frames
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data, b"WAVE", b"fmt ", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16,
        b"data", data,
    )  # fmt: skip


class PcmStream:
    """16-bit mono PCM written as it comes: into a WAV whose header is rewritten after each write
    (`path`, made with its folder; an existing file only with `overwrite`), or raw into a binary
    stream (`path` "-": stdout). `frames`: the samples on disk (or sent)."""

    def __init__(self, path: str, sample_rate: int, stdout=None, overwrite: bool = False):
        self.sample_rate, self.frames, self.wav = sample_rate, 0, path != STDOUT
        if self.wav:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "wb" if overwrite else "xb")  # x: a file made since the check is kept
            self.file.write(wav_header(sample_rate, 0))
            self.file.flush()  # a reader finds a (still empty) WAV from the start
        else:
            self.file = stdout if stdout is not None else sys.stdout.buffer

    def write(self, pcm: Int[np.ndarray, " L"]) -> None:
        if self.wav:  # after the samples counted: over whatever a write stopped midway left
            self.file.seek(HEADER_BYTES + 2 * self.frames)
        self.file.write(pcm.tobytes())
        self.file.flush()  # on disk (or sent) before it is counted: a full disk fails here
        self.frames += len(pcm)
        if self.wav:
            self.header()

    def header(self) -> None:
        """The sizes now, so that a reader (or a kill) finds a whole WAV."""
        self.file.seek(0)
        self.file.write(wav_header(self.sample_rate, self.frames))
        self.file.flush()

    def close(self) -> None:
        """The WAV's header and length as counted (bytes past them cut), then closed; the file is
        closed even when that fails."""
        if not self.wav:
            return
        try:
            self.header()
            self.file.truncate(HEADER_BYTES + 2 * self.frames)
        finally:
            self.file.close()


def quiet_stdout() -> None:
    """stdout onto /dev/null: its reader is gone, and Python's own flush at exit would fail again,
    with a traceback."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)


def check_target(path: str, overwrite: bool, stdout=None) -> str:
    """`--stream`'s target checked before any work: "-" only into a pipe or a file (raw audio on a
    terminal is noise), else a .wav path, not an existing file unless `overwrite` (its folder is
    made when the stream opens)."""
    if path == STDOUT:
        out = stdout if stdout is not None else sys.stdout
        if out.isatty():
            raise ValueError(
                "--stream - writes raw audio to stdout, which is a terminal: pipe it to a player "
                "(... | aplay -f S16_LE -r RATE -c 1) or give a .wav path"
            )
        return path
    target = Path(path)
    if target.suffix.lower() != ".wav":
        raise ValueError(f"--stream takes a .wav path or - (raw PCM on stdout); got {path}")
    if target.is_dir():
        raise ValueError(f"--stream {path} is a folder: give a .wav path")
    if target.exists() and not overwrite:
        raise ValueError(f"--stream {path} exists: give a new path, or --overwrite to replace it")
    return path


def stream_to(
    model: SashimiLM,
    quantization: str,
    sample_rate: int,
    path: str,
    length: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    prefix: Int[Tensor, " P"] | None = None,
    seed: int = 0,
    log=print,
    compile: bool | str = "auto",
    started: float | None = None,
    stdout=None,
    overwrite: bool = False,
) -> int:
    """The sample `generate_to_folder` makes with one sample and this seed (the prefix, then `length`
    drawn samples), written to `path` (a .wav, or "-") chunk by chunk as it is drawn; returns the
    samples written. Says how long the first generated audio took (from `started`, a
    `time.perf_counter()` reading, or from this call) and, at the end, the rate once set up. Ctrl-C
    writes what was drawn, says so and raises KeyboardInterrupt again; a reader closing stdout ends
    the run."""
    started = time.perf_counter() if started is None else started
    bits, chunk = model.config.bits, max(1, round(sample_rate * CHUNK_SECONDS))
    where = "stdout (raw 16-bit little-endian mono PCM)" if path == STDOUT else f"{path} (a WAV, valid as it grows)"
    try:
        out = PcmStream(path, sample_rate, stdout, overwrite)
    except OSError as e:
        raise OSError(f"cannot write {where}: {e.strerror or e}") from None
    pending, times = [], []  # times: the first token drawn, the first chunk written

    def flush() -> None:
        if pending:
            tokens = torch.cat(pending)
            pending.clear()  # first: a Ctrl-C inside the write must not write these twice
            out.write(pcm16(decode(tokens, bits, quantization).numpy()))

    def first_audio() -> None:
        times.append(time.perf_counter())
        note(
            f"first audio {times[1] - started:.3f} s after the start: {times[0] - started:.3f} s of setup "
            f"(checkpoint, recurrence, step), then {out.frames - n_prefix} samples in {times[1] - times[0]:.3f} s"
        )

    def listen(token: Int[Tensor, " B"]) -> None:
        if not times:  # the first token drawn: setup (checkpoint, recurrence, step engine) is behind us
            times.append(time.perf_counter())
        pending.append(token)
        if len(pending) == chunk:
            flush()
            if len(times) == 1:
                first_audio()

    n_prefix = 0 if prefix is None else prefix.shape[0]
    after = f"the {n_prefix:,}-sample prefix, then " if n_prefix else ""
    log(f"streaming {after}{length:,} generated samples at {sample_rate} Hz to {where}, {chunk} samples a chunk")
    finished = False
    try:
        if n_prefix:
            out.write(pcm16(decode(prefix, bits, quantization).numpy()))
        begin = time.perf_counter()
        with progress_bar(total=length, unit="step", desc="streaming", leave=False) as bar:
            note = functools.partial(bar.write, file=bar.fp)  # tqdm.write's default is stdout: the audio's
            sample(model, 1, length, temperature, top_p, prefix, seed, progress=bar, log=note, compile=compile,
                   listen=listen)  # fmt: skip
            flush()
            if len(times) == 1:  # a sample shorter than one chunk
                first_audio()
        end = time.perf_counter()
        finished = True
    except KeyboardInterrupt:
        try:
            flush()
        except BrokenPipeError:  # Ctrl-C reached the player too
            if stdout is None:
                quiet_stdout()
        log(f"interrupted: kept the {out.frames:,} samples streamed so far" + (f" in {path}" if out.wav else ""))
        raise
    except BrokenPipeError:
        log(f"stopped: the reader of stdout closed it after {out.frames:,} samples")
        if stdout is None:
            quiet_stdout()
        return out.frames
    except OSError as e:
        raise OSError(f"cannot write {where}: {e.strerror or e}") from None
    finally:
        if not finished:  # the error in flight is the one to tell
            with contextlib.suppress(OSError):
                out.close()
    try:
        out.close()
    except OSError as e:
        raise OSError(f"cannot write {where}: {e.strerror or e}") from None
    rate = (length - 1) / (end - times[0]) if length > 1 else 0.0
    log(
        f"streamed {length:,} samples in {end - begin:.1f} s, {rate:,.0f} samples/s once set up "
        f"({rate / sample_rate:.2f}x real time)"
    )
    return out.frames

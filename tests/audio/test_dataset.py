"""Audio folders -> (x, y) clips: listing, loading (mix-down, resampling), splits, clipping, bad files."""

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from sashimi.audio import dataset as data
from sashimi.audio.quantize import encode
from tests.helpers import SPOKEN_DIGITS, bit_depths, quantization_methods, token_clips, write


def name_in(split: str, stem: str) -> str:
    """The first file name `{stem}_{i}.wav` that split_of puts in `split`."""
    return next(name for name in (f"{stem}_{i}.wav" for i in range(10_000)) if data.split_of(name) == split)


def ramp(n: int) -> np.ndarray:
    return np.sin(np.linspace(0, 7, n)).astype(np.float32) * np.linspace(0.1, 0.8, n).astype(np.float32)


def test_listing_is_recursive_sorted_and_case_insensitive(tmp_path):
    expected = [
        write(tmp_path / "a.wav", ramp(10)),
        write(tmp_path / "sub" / "b.FLAC", ramp(10), subtype="PCM_16"),
        write(tmp_path / "sub" / "deeper" / "c.Wav", ramp(10)),
    ]
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "sub" / "d.mp3").write_bytes(b"\0" * 64)
    assert data.list_audio_files(tmp_path) == sorted(expected)
    assert data.load_audio(expected[1], 16000).shape == (10,)


def test_missing_empty_and_audio_free_folders_are_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        data.list_audio_files(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=f"no .wav or .flac files under {tmp_path}"):
        data.list_audio_files(tmp_path)
    (tmp_path / "readme.txt").write_text("no audio here")
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match="no .wav or .flac files under"):
        data.AudioDataset(tmp_path, "train", 16, 8, "mulaw")


def test_mono_file_at_the_target_rate_loads_silently_and_exactly(tmp_path):
    audio = ramp(100)
    path = write(tmp_path / "mono.wav", audio)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = data.load_audio(path, 16000)
    assert loaded.dtype == np.float32 and np.array_equal(loaded, audio)


def test_stereo_is_mixed_down_by_mean_with_a_notice(tmp_path):
    left, right = ramp(50), np.linspace(-0.5, 0.5, 50, dtype=np.float32)
    path = write(tmp_path / "stereo.wav", np.stack([left, right], axis=1))
    with pytest.warns(data.AudioNotice, match=r"stereo\.wav: 2 channels mixed down") as record:
        loaded = data.load_audio(path, 16000)
    assert len(record) == 1
    np.testing.assert_allclose(loaded, (left + right) / 2, atol=1e-7)


@pytest.mark.parametrize("rate, n, expected", [(8000, 800, 1600), (44100, 4410, 1600), (48000, 1000, 334)])
def test_other_rates_are_resampled_with_a_notice(tmp_path, rate, n, expected):
    t = np.arange(n) / rate
    path = write(tmp_path / f"tone_{rate}.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
    with pytest.warns(data.AudioNotice, match=f"tone_{rate}.wav: resampled from {rate} Hz to 16000 Hz"):
        loaded = data.load_audio(path, 16000)
    assert loaded.dtype == np.float32 and loaded.shape == (expected,)
    interior = slice(expected // 5, -expected // 5)
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(expected) / 16000)
    np.testing.assert_allclose(loaded[interior], tone[interior], atol=0.02)


def test_corrupt_or_empty_file_raises_naming_it(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(data.AudioFileError, match="broken.wav"):
        data.load_audio(bad, 16000)
    empty = write(tmp_path / "empty.wav", np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="empty.wav.*no samples"):
        data.load_audio(empty, 16000)


def test_split_is_a_deterministic_function_of_the_file_name():
    names = [f"clip_{i:04d}.wav" for i in range(300)]
    splits = [data.split_of(n) for n in names]
    assert splits == [data.split_of(Path("/some/other/folder") / n) for n in names]
    counts = {s: splits.count(s) for s in data.SPLITS}
    assert abs(counts["train"] / 300 - 0.8) < 0.08
    assert abs(counts["validation"] / 300 - 0.1) < 0.05 and abs(counts["test"] / 300 - 0.1) < 0.05
    assert {data.split_of(n, (1.0, 0.0, 0.0)) for n in names} == {"train"}
    assert {data.split_of(n, (0.0, 0.0, 1.0)) for n in names} == {"test"}
    with pytest.raises(ValueError, match="summing to 1"):
        data.split_of("a.wav", (0.5, 0.2, 0.2))


def test_a_split_without_files_is_an_error(tmp_path):
    write(tmp_path / name_in("train", "only"), ramp(20))
    with pytest.raises(ValueError, match="no 'test' split files"):
        data.AudioDataset(tmp_path, "test", 8, 8, "mulaw")
    with pytest.raises(ValueError, match="split must be one of"):
        data.AudioDataset(tmp_path, "val", 8, 8, "mulaw")


@given(token_clips())
def test_clip_pair_shifts_by_one_and_pads(clip):
    tokens, L, bits = clip
    z, n = 2 ** (bits - 1), len(tokens)
    x, y = data.clip_pair(torch.from_numpy(tokens), L, z)
    assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (L,)
    assert np.array_equal(y[:n], tokens) and torch.all(y[n:] == -100)
    assert x[0] == z and np.array_equal(x[1:n], tokens[:-1]) and torch.all(x[n:] == z)


@pytest.mark.parametrize("bits, method", [(8, "mulaw"), (16, "linear")])
def test_files_are_quantized_whole_then_cut_into_clips(tmp_path, bits, method):
    L, lengths = 16, [40, 32, 5]
    paths = [write(tmp_path / name_in("train", f"f{n}"), ramp(n) * (i + 1)) for i, n in enumerate(lengths)]
    dataset = data.AudioDataset(tmp_path, "train", L, bits, method)
    assert dataset.files == sorted(paths) and len(dataset) == 3 + 2 + 1
    assert dataset.tokens[0].dtype == (np.int16 if bits == 8 else np.int32)
    z = 2 ** (bits - 1)
    clips = iter(range(len(dataset)))
    for path in dataset.files:
        tokens = encode(torch.from_numpy(sf.read(path, dtype="float32")[0]), bits, method)
        assert tokens.min() == 0 and tokens.max() == 2**bits - 1, "one min-max over the whole file"
        for start in range(0, len(tokens), L):
            x, y = dataset[next(clips)]
            q = tokens[start : start + L]
            n = len(q)
            assert x.shape == y.shape == (L,) and x.dtype == y.dtype == torch.int64
            assert torch.equal(y[:n], q) and torch.all(y[n:] == -100)
            assert x[0] == z and torch.equal(x[1:n], q[:-1]) and torch.all(x[n:] == z)


def test_corrupt_files_are_skipped_with_a_warning_naming_them(tmp_path):
    good = write(tmp_path / name_in("train", "good"), ramp(30))
    bad = tmp_path / name_in("train", "bad")
    bad.write_bytes(b"definitely not a wav file")
    with pytest.warns(data.AudioNotice, match=f"skipping {bad}"):
        dataset = data.AudioDataset(tmp_path, "train", 8, 8, "linear")
    assert dataset.files == [good] and len(dataset) == 4
    good.unlink()
    with pytest.warns(data.AudioNotice, match="skipping"), pytest.raises(ValueError, match="could be read"):
        data.AudioDataset(tmp_path, "train", 8, 8, "linear")


def test_bad_dataset_arguments(tmp_path):
    write(tmp_path / name_in("train", "x"), ramp(20))
    with pytest.raises(ValueError, match="bits must be one of"):
        data.AudioDataset(tmp_path, "train", 8, 12, "mulaw")
    with pytest.raises(ValueError, match="'alaw'"):
        data.AudioDataset(tmp_path, "train", 8, 8, "alaw")
    with pytest.raises(ValueError, match="seq_len"):
        data.AudioDataset(tmp_path, "train", 0, 8, "mulaw")


@pytest.mark.external
@pytest.mark.skipif(not SPOKEN_DIGITS.is_dir(), reason=f"shared corpus not found at {SPOKEN_DIGITS}")
def test_spoken_digits_validation_split():
    files = data.list_audio_files(SPOKEN_DIGITS)
    counts = {s: sum(data.split_of(p) == s for p in files) for s in data.SPLITS}
    assert sum(counts.values()) == len(files) >= 300 and min(counts.values()) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = data.AudioDataset(SPOKEN_DIGITS, "validation", 16000, 8, "mulaw")
    assert len(dataset.files) == counts["validation"] == len(dataset), "1-s clips at 16 kHz: one clip per file"
    x, y = dataset[0]
    assert x.shape == y.shape == (16000,) and x[0] == 128 and torch.equal(x[1:], y[:-1])
    assert y.min() == 0 and y.max() == 255


@st.composite
def file_and_clip_lengths(draw) -> tuple[int, int]:
    """(n, L): a file of n tokens cut into clips of L, with the tail length n mod L drawn on its own
    so that every remainder 0 .. L-1 comes up, as do n < L (no full clip) and n = L (no tail)."""
    L = draw(st.integers(1, 12))
    full_clips = draw(st.integers(0, 3))
    tail = draw(st.integers(1 if full_clips == 0 else 0, L - 1)) if L > 1 else int(full_clips == 0)
    return full_clips * L + tail, L


@given(file_and_clip_lengths(), bit_depths, quantization_methods, st.integers(0, 2**32 - 1))
@example((3, 8), 8, "mulaw", 0)  # n < L: one clip, all tail
@example((8, 8), 16, "linear", 1)  # n = L: one clip, no padding
@example((24, 8), 8, "linear", 2)  # n mod L = 0: no padding anywhere
@example((23, 8), 16, "mulaw", 3)  # n mod L = L - 1: one position of padding
@example((17, 8), 8, "mulaw", 4)  # n mod L = 1: a tail of one token, whose x is z alone
@example((5, 1), 8, "linear", 5)  # L = 1: every clip is x = [z], y = [q_t]
def test_clips_cover_a_file_in_order_at_every_tail_length(lengths, bits, method, seed):
    n, L = lengths
    samples = np.random.default_rng(seed).uniform(-0.9, 0.9, n).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:  # hypothesis reruns the body: no function-scoped tmp_path
        write(Path(folder) / "file.wav", samples)
        dataset = data.AudioDataset(folder, None, L, bits, method)
    # float WAV samples read back exactly, so the file's tokens are encode() of the samples written
    expected = encode(torch.from_numpy(samples), bits, method).numpy()
    assert np.array_equal(dataset.tokens[0], expected)
    z = 2 ** (bits - 1)
    assert len(dataset) == -(-n // L), "ceil(n / L) clips"
    pairs = [dataset[i] for i in range(len(dataset))]
    ys = np.concatenate([y.numpy() for _, y in pairs])
    assert np.array_equal(ys[ys != -100], expected), "the targets, read in order, are the file"
    assert np.count_nonzero(ys == -100) == len(dataset) * L - n and np.all(ys[n:] == -100), "-100 only on the tail"
    for x, y in pairs:
        # x[t] = y[t - 1] (x[0] = z) where y[t] is a target; z where y[t] is padding, so that a
        # tail clip's x holds q_0 .. q_{m-2} and never its last token q_{m-1}
        y = y.numpy()
        assert np.array_equal(x.numpy(), np.where(y == -100, z, np.concatenate([[z], y[:-1]]))), (
            "x = [z, y[:-1]], padded with z"
        )


def test_a_silent_file_is_silent_tokens(tmp_path):
    folder = tmp_path / "quiet"
    write(folder / "silence.wav", np.zeros(300, dtype=np.float32))
    write(folder / "one_sample.wav", np.array([0.4], dtype=np.float32))
    dataset = data.AudioDataset(folder, None, 64, 8, "mulaw")
    for tokens in dataset.tokens:
        assert (tokens == 128).all()


def test_a_folder_with_no_file_in_the_training_split_trains_on_all(tmp_path):
    """Split by file-name hash: a one-file folder whose name falls in validation still trains (on that file), with a
    notice."""
    from sashimi.training import loop
    from tests.helpers import train_config

    folder = tmp_path / "one"
    name = next(f"clip{i}.wav" for i in range(1000) if data.split_of(f"clip{i}.wav") == "validation")
    write(folder / name, np.sin(np.arange(2000) / 7).astype(np.float32))
    notes = []
    train, validation, _ = loop.datasets(train_config(folder, tmp_path / "runs").resolved(), tmp_path, notes.append)
    assert train.files == [folder / name] and validation.files == [folder / name]
    assert any("training on all 1 files" in note for note in notes)

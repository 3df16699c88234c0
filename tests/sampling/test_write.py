"""What generation writes to disk: 16-bit WAVs at the checkpoint's rate that decode back to the
generated tokens under its quantization, named by rank and log-likelihood, best first.

The WAVs are read back with an inverse of the quantizers written here in NumPy (not
`sashimi.audio.quantize`). libsndfile writes PCM_16 as floor(32768 x) (measured with soundfile
0.14 / libsndfile 1.2.2: x = -0.25 / 32768 reads back as -1 / 32768), so a written value lies
within one PCM_16 step, 2^-15, of the decoded one; an 8-bit level spans 256 such steps under
linear and at least 1 / 0.18 of a level per step under mu-law (slope 255 / ln 256 at 0).
"""

import re

import numpy as np
import pytest
import soundfile as sf
import torch

from sashimi import generate as generate_cmd
from sashimi.io import checkpoint
from sashimi.sampling import write
from sashimi.sampling.sample import sample
from sashimi.sampling.write import generate_to_folder
from tests.helpers import lm, teacher_forced_loglik, tiny_config, tokens

PCM_STEP = 2.0**-15
NAME = re.compile(r"sample_(\d\d)_loglik_(-?\d+\.\d{3})\.wav")


def decoded(tokens: np.ndarray, bits: int, quantization: str) -> np.ndarray:
    """The signal of tokens k: y = k / (q/2) - 1, and for mu-law sign(y) ((1 + mu)^|y| - 1) / mu."""
    q = 2**bits
    y = np.asarray(tokens, dtype=np.float64) / (q / 2) - 1
    return np.sign(y) * np.expm1(np.abs(y) * np.log1p(q - 1)) / (q - 1) if quantization == "mulaw" else y


def requantized(audio: np.ndarray, bits: int, quantization: str) -> np.ndarray:
    """The nearest level of each sample: the inverse of `decoded` (mu-law compressed first), rounded."""
    q = 2**bits
    if quantization == "mulaw":
        audio = np.sign(audio) * np.log1p((q - 1) * np.abs(audio)) / np.log1p(q - 1)
    return np.rint((audio + 1) * (q / 2)).astype(np.int64)


def read_folder(folder, bits: int, quantization: str, rate: int):
    """(ranks, scores, token rows, raw audio) of the folder's WAVs in name order, after checking each
    file's format and rate."""
    ranks, scores, rows, audios = [], [], [], []
    for path in sorted(folder.glob("*.wav")):
        ranks.append(int(NAME.fullmatch(path.name)[1]))
        scores.append(float(NAME.fullmatch(path.name)[2]))
        info = sf.info(path)
        assert (info.samplerate, info.subtype, info.channels) == (rate, "PCM_16", 1)
        assert path.with_suffix(".png").is_file()
        audio, _ = sf.read(path, dtype="float64")
        rows.append(requantized(audio, bits, quantization))
        audios.append(audio)
    return ranks, np.array(scores), np.array(rows), np.array(audios)


@pytest.fixture
def plots_touched(monkeypatch):
    """Each spectrogram PNG (about a second of matplotlib) stands as an empty file: the tests below
    check what the WAVs hold; the first test draws the real pictures."""
    monkeypatch.setattr(write, "plot_sample", lambda audio, rate, path, title: path.touch())


@pytest.mark.parametrize("quantization", ["mulaw", "linear"])
def test_written_wavs_decode_to_the_sampled_tokens_best_first(quantization, tmp_path):
    """One batch: the files are `sample`'s sequences (prefix included) in descending score order,
    each named by its rank and its score to three decimals, at the given sample rate."""
    model = lm(4, torch.float32, **tiny_config(8).to_dict())
    prefix = tokens(4, 1, 3, 256)[0]
    args = (4, 14, 0.9, 0.95, prefix)
    generate_to_folder(model, quantization, 8000, tmp_path, *args, batch_size=8, seed=7, log=lambda *_: None)
    expected, scores = sample(model, *args, seed=7)
    order = np.argsort(-scores.numpy())
    ranks, named, rows, audios = read_folder(tmp_path, 8, quantization, 8000)
    assert ranks == list(range(4))
    assert [f"{s:.3f}" for s in named] == [f"{s:.3f}" for s in scores.numpy()[order]]
    assert np.array_equal(rows, expected.numpy()[order])
    assert np.all(np.abs(audios - decoded(rows, 8, quantization)) <= PCM_STEP)


@pytest.mark.parametrize("quantization", ["mulaw", "linear"])
def test_16bit_wavs_hold_the_decoded_tokens_within_one_pcm_step(quantization, tmp_path, plots_touched):
    """16-bit: linear levels are PCM_16 values themselves (exact round trip); mu-law levels near 0
    are finer than PCM_16, so the check is on the signal."""
    model = lm(5, torch.float32, **tiny_config(16).to_dict())
    generate_to_folder(model, quantization, 16000, tmp_path, 2, 17, batch_size=2, seed=1, log=lambda *_: None)
    expected, scores = sample(model, 2, 17, seed=1)
    expected = expected.numpy()[np.argsort(-scores.numpy())]
    _, _, rows, audios = read_folder(tmp_path, 16, quantization, 16000)
    assert np.all(np.abs(audios - decoded(expected, 16, quantization)) <= PCM_STEP)
    if quantization == "linear":
        assert np.array_equal(rows, expected)


def test_batched_files_are_distinct_and_named_by_their_own_likelihood(tmp_path, plots_touched):
    """Three batches (the last one short): each file's name holds the teacher-forced likelihood of
    the tokens it decodes to, names rank the files best first, and no two batches repeat a draw."""
    model = lm(6, torch.float32, **tiny_config(8).to_dict())
    generate_to_folder(model, "mulaw", 8000, tmp_path, 5, 17, 1.2, 1.0, batch_size=2, seed=0, log=lambda *_: None)
    ranks, named, rows, _ = read_folder(tmp_path, 8, "mulaw", 8000)
    assert ranks == list(range(5)) and len({tuple(r) for r in rows}) == 5
    assert np.all(np.diff(named) <= 0)
    assert np.all(
        np.abs(named - teacher_forced_loglik(model, torch.from_numpy(rows), 0, 1.2, 1.0)) <= 5e-4 + 1e-6
    )  # 3 decimals


@pytest.mark.parametrize(
    "quantization, rate, length",
    [("linear", 8000, ["--length", "12"]), ("mulaw", 11025, ["--seconds", "0.0011"])],
    ids=["linear-8000Hz-length", "mulaw-11025Hz-seconds"],
)
def test_generate_command_writes_at_the_checkpoint_rate_and_quantization(
    quantization, rate, length, tmp_path, capsys, plots_touched
):
    """`python -m sashimi.generate` on a checkpoint of non-default rate and quantization, primed by a
    WAV: every file starts with the prefix's tokens under that quantization and is named by the
    likelihood of what it decodes to, given that prefix; --seconds counts at the checkpoint's rate
    (0.0011 s at 11025 Hz: 12 samples)."""
    model = lm(7, torch.float32, **tiny_config(8).to_dict())
    path = checkpoint.save(
        {
            "model": model.state_dict(),
            "config": {"model": model.config.to_dict(), "train": {"quantization": quantization, "sample_rate": rate}},
        },
        tmp_path / "run" / "checkpoint.pt",
    )
    prefix_tokens = np.concatenate([[0, 255], tokens(8, 1, 6, 256)[0].numpy()])  # 0 and 255 fix the min-max scale
    prefix = tmp_path / "prefix.wav"
    sf.write(prefix, decoded(prefix_tokens, 8, "linear"), rate, subtype="PCM_16")
    code = generate_cmd.main(
        [
            "--checkpoint",
            str(path),
            "--n-samples",
            "3",
            *length,
            "--prefix",
            str(prefix),
            "--temperature",
            "0.8",
            "--seed",
            "4",
        ]
    )
    assert code == 0, capsys.readouterr().err
    (folder,) = (path.parent / "generated").iterdir()  # each run's own fresh folder
    ranks, named, rows, _ = read_folder(folder, 8, quantization, rate)
    assert ranks == [0, 1, 2] and rows.shape == (3, 20)
    if quantization == "linear":  # the prefix is on the linear grid with its extremes: it encodes to its own tokens
        assert np.array_equal(rows[:, :8], np.broadcast_to(prefix_tokens, (3, 8)))
    assert np.all(np.abs(named - teacher_forced_loglik(model, torch.from_numpy(rows), 8, 0.8, 1.0)) <= 5e-4 + 1e-6)


@pytest.mark.parametrize("at", ["wav", "png", "png rename"])
def test_ctrl_c_during_a_write_leaves_no_file_of_that_sample(at, tmp_path, monkeypatch):
    """A KeyboardInterrupt once the second sample's WAV or PNG is written (under its hidden name), or
    as its PNG is renamed: it propagates, and the folder holds the first sample's pair only, no hidden
    partial file and no file of the second."""
    calls = []

    def interrupted(real):
        def call(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2 and at == "png rename":
                raise KeyboardInterrupt
            done = real(*args, **kwargs)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return done

        return call

    def touch(audio, rate, path, title):
        path.touch()

    monkeypatch.setattr(write, "plot_sample", interrupted(touch) if at == "png" else touch)
    if at == "wav":
        monkeypatch.setattr(write.sf, "write", interrupted(sf.write))
    elif at == "png rename":
        rename, real = interrupted(write.os.replace), write.os.replace
        monkeypatch.setattr(
            write.os, "replace", lambda src, dst: rename(src, dst) if str(dst).endswith(".png") else real(src, dst)
        )
    audio = np.linspace(-0.5, 0.5, 32, dtype=np.float32)
    write.write_pair(audio, 8000, tmp_path / "sample_00.wav", "first")
    with pytest.raises(KeyboardInterrupt):
        write.write_pair(audio, 8000, tmp_path / "sample_01.wav", "second")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample_00.png", "sample_00.wav"]


def test_a_folder_holding_samples_is_refused_unless_overwrite_is_given(tmp_path):
    (tmp_path / "sample_0_loglik_-1.00.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="already holds 1 generated samples"):
        write.prepare_folder(tmp_path)
    assert write.prepare_folder(tmp_path, overwrite=True) == tmp_path


def test_the_writability_probe_is_made_inside_the_new_nested_folder(tmp_path, monkeypatch):
    """The probe file must live in --out itself (a writable /tmp says nothing about --out), and a
    missing --out is made with its parents."""
    probes, real = [], write.tempfile.TemporaryFile
    monkeypatch.setattr(write.tempfile, "TemporaryFile", lambda **kw: probes.append(kw.get("dir")) or real(**kw))
    out = tmp_path / "a" / "b"
    assert write.prepare_folder(out) == out and out.is_dir()
    assert probes == [out]


def test_the_estimate_counts_every_tensor_of_the_state_and_the_batch_it_runs():
    """generation_bytes against a count made here: the state's bytes found by torch's own tree walk,
    plus per sequence of a batch 6 float32 logit rows and 16 bytes a step; the batch is the smaller of
    --batch-size and the samples, so the estimate moves with it up to that and not beyond."""
    import torch.utils._pytree as pytree

    from tests.helpers import lm, tiny_config

    model = lm(0, torch.float32, **tiny_config(8).to_dict())
    leaves = [t for t in pytree.tree_leaves(model.default_state(1)) if isinstance(t, torch.Tensor)]
    state = sum(t.numel() * t.element_size() for t in leaves)
    nested = list(write._tensors({"a": [leaves[0], (None, {"b": leaves[1]})]}))
    assert state > 0 and len(nested) == 2 and nested[0] is leaves[0] and nested[1] is leaves[1]
    length = 100
    per_sequence = state + 6 * 4 * 256 + 16 * length
    one, four, eight = (write.generation_bytes(model, 4, length, batch_size=b) for b in (1, 4, 8))
    assert four - one == 3 * per_sequence and eight == four


def test_the_library_defaults_are_the_commands():
    """A caller of generate_to_folder gets what `python -m sashimi.generate` gets without flags."""
    import inspect

    from sashimi import generate

    args = generate.make_parser().parse_args(["--checkpoint", "x.pt"])
    defaults = {k: p.default for k, p in inspect.signature(generate_to_folder).parameters.items()}
    for name in ("temperature", "top_p", "batch_size", "seed", "compile", "overwrite"):
        assert defaults[name] == getattr(args, name), name


def test_batches_bar_and_seeds_of_a_generation(tmp_path, monkeypatch, plots_touched):
    """5 samples in batches of 2: the log says 3 batches; the bar counts 3 x 8 steps and reaches them
    (each batch advances it once a step); batch i draws with the seed plus its first sample's index."""
    from tests.helpers import lm, tiny_config

    model = lm(3, torch.float32, **tiny_config(8).to_dict())
    bars, seeds, logs = [], [], []
    real_bar, real_sample = write.progress_bar, write.sample
    monkeypatch.setattr(write, "progress_bar", lambda **kw: bars.append(real_bar(**kw)) or bars[-1])
    monkeypatch.setattr(write, "sample", lambda *a, **kw: seeds.append(a[6]) or real_sample(*a, **kw))
    paths = generate_to_folder(model, "mulaw", 8000, tmp_path, 5, 8, batch_size=2, seed=7, log=logs.append)
    assert len(paths) == 5 and "generating 5 x 8 samples in 3 batches of up to 2" in logs[0]
    assert [bar.total for bar in bars] == [24] and bars[0].n == 24
    assert seeds == [7, 9, 11]
    # the defaults (those of `python -m sashimi.generate`): batches of 16 from seed 0, and a folder
    # already holding samples refused
    seeds.clear()
    generate_to_folder(model, "mulaw", 8000, tmp_path / "defaults", 17, 2, log=logs.append)
    assert "generating 17 x 2 samples in 2 batches of up to 16" in logs[-2] and seeds == [0, 16]
    with pytest.raises(ValueError, match="already holds 17 generated samples"):
        generate_to_folder(model, "mulaw", 8000, tmp_path / "defaults", 1, 2, log=logs.append)

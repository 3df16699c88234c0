"""Generation's outputs under bad requests and faults: a fresh folder per run, never two runs mixed,
each WAV with its PNG or neither, write errors naming the file, Ctrl-C keeping what finished, a
request that cannot fit refused before it starts, the prefix's place in the output, quiet plotting."""

import errno
from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf
import torch

from sashimi import generate
from sashimi.io import checkpoint
from sashimi.sampling import write
from tests.draws import interrupt_at_draw
from tests.helpers import assert_one_line_error, lm, run_main, tiny_config, wav_with_rate


@pytest.fixture
def ckpt(tmp_path):
    model = lm(3, torch.float32, **tiny_config(8).to_dict())
    return checkpoint.save(
        {"model": model.state_dict(), "config": {"model": model.config.to_dict(), "train": {"sample_rate": 8000}}},
        tmp_path / "run" / "checkpoint.pt",
    )


@pytest.fixture
def plots_touched(monkeypatch):
    """Each PNG stands as an empty file (a real spectrogram costs about a second)."""
    monkeypatch.setattr(write, "plot_sample", lambda audio, rate, path, title: path.touch())


def names(folder, suffix):
    return sorted(p.stem for p in folder.glob(f"*{suffix}"))


def test_generate_flags_parse_as_their_help_says(capsys):
    parser = generate.make_parser()
    with pytest.raises(SystemExit):
        parser.parse_args([])
    assert "the following arguments are required: --checkpoint" in capsys.readouterr().err
    args = parser.parse_args(["--checkpoint", "m.pt"])
    assert (args.compile, args.out, args.overwrite, args.n_samples, args.batch_size) == ("auto", None, False, None, 16)
    assert args.stream is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--checkpoint", "m.pt", "--compile", "fast"])
    assert "default: a fresh generated/<timestamp>/ beside the checkpoint" in " ".join(parser.format_help().split())


def test_each_run_without_out_gets_a_fresh_folder(ckpt, capsys, plots_touched):
    for n in ("3", "2"):
        assert generate.main(["--checkpoint", str(ckpt), "--n-samples", n, "--length", "8"]) == 0
    folders = sorted((ckpt.parent / "generated").iterdir())
    assert [len(names(f, ".wav")) for f in folders] == [3, 2]
    assert not (ckpt.parent / "samples").exists()  # training's own sample folder is left alone


def test_an_out_holding_samples_is_refused_then_replaced_with_overwrite(ckpt, tmp_path, capsys, plots_touched):
    out = tmp_path / "out"
    assert generate.main(["--checkpoint", str(ckpt), "--n-samples", "3", "--length", "8", "--out", str(out)]) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    code, err = run_main(
        generate,
        ["--checkpoint", str(ckpt), "--n-samples", "2", "--length", "8", "--seed", "5", "--out", str(out)],
        capsys,
    )
    assert_one_line_error(code, err, f"--out {out} already holds 3 generated samples", "--overwrite")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert (
        generate.main(
            [
                "--checkpoint",
                str(ckpt),
                "--n-samples",
                "2",
                "--length",
                "8",
                "--seed",
                "5",
                "--out",
                str(out),
                "--overwrite",
            ]
        )
        == 0
    )
    assert len(names(out, ".wav")) == 2 and names(out, ".wav") == names(out, ".png")  # replaced, not mixed


def test_an_out_that_is_a_file_or_not_writable_is_one_error_with_advice(ckpt, tmp_path, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, err = run_main(generate, ["--checkpoint", str(ckpt), "--length", "8", "--out", str(afile)], capsys)
    assert_one_line_error(code, err, f"--out {afile} is a file, not a folder")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(write.tempfile, "TemporaryFile", read_only)
    code, err = run_main(generate, ["--checkpoint", str(ckpt), "--length", "8", "--out", str(tmp_path / "ro")], capsys)
    assert_one_line_error(
        code,
        err,
        f"cannot write into the output folder {tmp_path / 'ro'}: Read-only file system",
        "writable folder with --out",
    )


@pytest.mark.parametrize("failing", ["wav", "png", "png rename", "wav rename"])
def test_a_full_disk_names_the_file_and_leaves_no_wav_without_its_png(
    failing, ckpt, tmp_path, capsys, monkeypatch, plots_touched
):
    calls = {"wav": 0, "png": 0, "png rename": 0}

    def full(kind, real):
        def writer(*args, **kwargs):
            calls[kind] += 1
            if calls[kind] == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        return writer

    if failing == "wav":
        monkeypatch.setattr(write.sf, "write", full("wav", sf.write))
    elif failing == "png":
        monkeypatch.setattr(write, "plot_sample", full("png", write.plot_sample))
    else:  # both files written, a rename fails: the WAV must not stand alone, nor the PNG already in place
        suffix = ".png" if failing == "png rename" else ".wav"
        rename, real = full("png rename", write.os.replace), write.os.replace
        monkeypatch.setattr(
            write.os, "replace", lambda src, dst: rename(src, dst) if str(dst).endswith(suffix) else real(src, dst)
        )
    out = tmp_path / "out"
    code, err = run_main(
        generate, ["--checkpoint", str(ckpt), "--n-samples", "3", "--length", "8", "--out", str(out)], capsys
    )
    assert_one_line_error(
        code, err, f"cannot write {out}/sample_01_loglik_", f".{failing[:3]}: No space left on device"
    )
    assert names(out, ".wav") == names(out, ".png") and len(names(out, ".wav")) == 1
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no partial file left


@pytest.mark.parametrize("interrupt_at, kept", [(2, 2), (1, 0)])
def test_ctrl_c_keeps_the_finished_samples_and_exits_130_without_a_traceback(
    interrupt_at, kept, ckpt, tmp_path, capsys, monkeypatch, plots_touched
):
    real, batches = write.sample, []

    def interrupted(*args, **kwargs):
        batches.append(1)
        if len(batches) == interrupt_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(write, "sample", interrupted)
    code = generate.main(["--checkpoint", str(ckpt), "--n-samples", "4", "--batch-size", "2", "--length", "8"])
    captured = capsys.readouterr()
    assert code == 130 and "Traceback" not in captured.err + captured.out
    generated = ckpt.parent / "generated"
    if kept:
        (folder,) = generated.iterdir()
        assert "interrupted: kept the 2 of 4 samples finished so far (sample_00_loglik_" in captured.out
        assert f", ...) in {folder}" in captured.out
        assert len(names(folder, ".wav")) == 2 and names(folder, ".wav") == names(folder, ".png")
    else:
        assert "interrupted before any sample: nothing written" in captured.out
        assert not generated.exists() or not any(generated.iterdir())  # no empty folder left


@pytest.mark.parametrize(
    "argv",
    [["--length", str(10**12)], ["--n-samples", str(10**8), "--batch-size", str(10**8), "--length", "64"]],
    ids=["length 1e12", "batch 1e8"],
)
def test_generation_that_cannot_fit_is_refused_before_it_starts(argv, ckpt, capsys):
    code, err = run_main(generate, ["--checkpoint", str(ckpt), *argv], capsys)
    assert_one_line_error(
        code, err, "needs about", "of memory (estimate)", "lower --n-samples, --seconds/--length or --batch-size"
    )
    assert not (ckpt.parent / "generated").exists() or not any((ckpt.parent / "generated").iterdir())


def test_the_estimate_counts_every_kept_token(ckpt):
    """Tokens and log-likelihoods of every sample are kept until written: doubling the samples
    (same batch) or the length adds at least the 20 bytes a position each costs."""
    model, _ = checkpoint.load_model(ckpt)
    base = write.generation_bytes(model, 4, 100, batch_size=2)
    assert write.generation_bytes(model, 8, 100, batch_size=2) - base >= 4 * 100 * 20
    assert write.generation_bytes(model, 4, 200, batch_size=2) - base >= 4 * 100 * 20
    assert write.generation_bytes(model, 4, 100, prefix_length=100, batch_size=2) - base >= 4 * 100 * 20


def test_the_prefix_is_in_each_wav_and_the_log_says_so(ckpt, tmp_path, capsys, plots_touched):
    prefix = tmp_path / "prefix.wav"
    sf.write(prefix, np.linspace(-0.5, 0.5, 20), 8000, subtype="PCM_16")
    assert (
        generate.main(
            [
                "--checkpoint",
                str(ckpt),
                "--n-samples",
                "1",
                "--length",
                "16",
                "--prefix",
                str(prefix),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"prefix {prefix}: 20 samples at 8000 Hz; each WAV holds them, then 16 generated samples" in out
    assert "generated 1 x 16 samples after the 20-sample prefix (each WAV holds 36)" in out
    (wav,) = (tmp_path / "o").glob("*.wav")
    assert sf.info(wav).frames == 36


def test_short_samples_plot_without_warnings(ckpt, tmp_path, capsys):
    """16 samples are fewer than a spectrogram window: matplotlib's warnings (shown by the command's
    notices, which turn every warning on) stay out of the console."""
    assert (
        generate.main(["--checkpoint", str(ckpt), "--n-samples", "1", "--length", "16", "--out", str(tmp_path / "o")])
        == 0
    )
    err = capsys.readouterr().err
    assert "Warning" not in err and "notice" not in err, err
    assert len(list((tmp_path / "o").glob("*.png"))) == 1


@pytest.mark.parametrize("rate", [2_000_000_000, 500])
def test_a_prefix_with_an_impossible_rate_is_refused_naming_it(rate, ckpt, tmp_path, capsys):
    prefix = wav_with_rate(tmp_path / "odd.wav", rate)
    assert sf.info(prefix).samplerate == rate
    code, err = run_main(
        generate,
        ["--checkpoint", str(ckpt), "--length", "8", "--prefix", str(prefix), "--out", str(tmp_path / "o")],
        capsys,
    )
    assert_one_line_error(code, err, f"audio file {prefix}: its header says {rate:,} Hz, outside 1,000-384,000 Hz")


@pytest.mark.parametrize("seconds", ["0.0011", "0.0014"])
def test_seconds_give_the_nearest_whole_number_of_samples(seconds, ckpt, tmp_path, plots_touched):
    """--seconds s at 8000 Hz: the nearest whole number of samples to s x 8000, worked out exactly
    (8.8 -> 9, not 8; 11.2 -> 11, not 12)."""
    out = tmp_path / "o"
    argv = ["--checkpoint", str(ckpt), "--n-samples", "1", "--seconds", seconds, "--out", str(out)]
    assert generate.main(argv) == 0
    (wav,) = out.glob("*.wav")
    assert sf.info(wav).frames == round(Fraction(seconds) * 8000)


def test_a_failed_run_keeps_the_users_own_empty_out_folder(ckpt, tmp_path, capsys, monkeypatch):
    """Ctrl-C before the first batch finished: the run wrote nothing, and an --out folder the user made
    (empty) is still there; only a folder the run made itself (no --out) is removed."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(write, "sample", interrupted)
    mine = tmp_path / "mine"
    mine.mkdir()
    assert generate.main(["--checkpoint", str(ckpt), "--length", "8", "--out", str(mine)]) == 130
    assert mine.is_dir() and not any(mine.iterdir())
    assert generate.main(["--checkpoint", str(ckpt), "--length", "8"]) == 130
    generated = ckpt.parent / "generated"
    assert not generated.exists() or not any(generated.iterdir())


@pytest.mark.parametrize("rate, n", [(1000, 5), (384_000, 384)])
def test_a_prefix_at_either_limit_of_the_rate_range_is_accepted(rate, n, ckpt, tmp_path, capsys, plots_touched):
    """1,000 and 384,000 Hz lie inside the allowed range (both limits included): the prefix is read and
    resampled to the checkpoint's 8000 Hz, n x 8000 / rate samples, each WAV holding them first."""
    prefix = tmp_path / "edge.wav"
    sf.write(prefix, np.linspace(-0.5, 0.5, n), rate, subtype="PCM_16")
    argv = ["--checkpoint", str(ckpt), "--length", "8", "--n-samples", "1", "--prefix", str(prefix)]
    assert generate.main([*argv, "--out", str(tmp_path / "o")]) == 0
    (wav,) = (tmp_path / "o").glob("*.wav")
    assert sf.info(wav).frames == n * 8000 // rate + 8


def test_ctrl_c_mid_batch_keeps_the_samples_in_progress_cut_where_they_stopped(ckpt, tmp_path, monkeypatch, capsys):
    """Ctrl-C at the 13th draw: the first batch (2 x 8 steps) is finished, the second batch has drawn
    4 steps. Its 2 samples are kept as partial_*, and they are the first 4 samples of what an
    uninterrupted run with the same seed writes for that batch."""
    argv = ["--checkpoint", str(ckpt), "--n-samples", "4", "--batch-size", "2", "--length", "8"]
    assert generate.main([*argv, "--out", str(tmp_path / "whole")]) == 0
    interrupt_at_draw(13, monkeypatch)
    capsys.readouterr()
    assert generate.main([*argv, "--out", str(tmp_path / "cut")]) == 130
    out = capsys.readouterr().out
    assert "kept the 2 of 4 samples finished so far" in out and "the 2 in progress, cut at 4 of 8 steps" in out
    whole = {p.name: sf.read(p, dtype="int16")[0] for p in (tmp_path / "whole").glob("*.wav")}
    cut = {p.name: sf.read(p, dtype="int16")[0] for p in (tmp_path / "cut").glob("*.wav")}
    finished = [a for n, a in cut.items() if n.startswith("sample_")]
    partial = [a for n, a in cut.items() if n.startswith("partial_")]
    assert len(finished) == 2 and len(partial) == 2 and all(len(a) == 4 for a in partial)
    assert all(any(np.array_equal(a, b) for b in whole.values()) for a in finished)
    assert all(any(np.array_equal(a, b[:4]) for b in whole.values()) for a in partial)
    assert sorted(p.suffix for p in (tmp_path / "cut").iterdir()) == [".png"] * 4 + [".wav"] * 4


@pytest.mark.nightly  # 5 s; Ctrl-C mid-batch without --overwrite stays in make test
def test_ctrl_c_mid_batch_with_overwrite_replaces_the_earlier_samples_only(ckpt, tmp_path, monkeypatch, capsys):
    """--overwrite removes the folder's earlier samples once, before the first batch is written: the
    samples in progress, written after the finished ones, must not remove those."""
    argv = ["--checkpoint", str(ckpt), "--n-samples", "4", "--batch-size", "2", "--length", "8", "--out", str(tmp_path)]
    assert generate.main(argv) == 0 and len(names(tmp_path, ".wav")) == 4
    interrupt_at_draw(13, monkeypatch)
    assert generate.main([*argv, "--overwrite"]) == 130
    wavs = sorted(p.name for p in tmp_path.glob("*.wav"))
    assert [n.split("_")[0] for n in wavs] == ["partial"] * 2 + ["sample"] * 2, wavs
    assert names(tmp_path, ".wav") == names(tmp_path, ".png")


def test_a_soundfile_error_names_the_file_and_its_first_line(tmp_path, monkeypatch):
    """soundfile reports a failed write as a RuntimeError: the message is its first line, and no
    partial file stays."""

    def fails(*args, **kwargs):
        raise RuntimeError("Error opening 'x.wav': Disk quota exceeded.\nsecond line")

    monkeypatch.setattr(write.sf, "write", fails)
    wav = tmp_path / "sample_00_loglik_-1.000.wav"
    with pytest.raises(
        OSError, match=r"^cannot write .*sample_00_loglik_-1.000.wav: Error opening 'x.wav': Disk quota exceeded.$"
    ):
        write.write_pair(np.zeros(8, dtype=np.float32), 8000, wav, "t")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_the_wav_rename_leaves_neither_file(tmp_path, monkeypatch):
    """Ctrl-C (not an OSError) once the PNG is in place and the WAV's rename runs: both go, as for a
    failed write, and the interrupt goes on."""
    real = write.os.replace

    def replace(src, dst):
        if str(dst).endswith(".wav"):
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(write.os, "replace", replace)
    monkeypatch.setattr(write, "plot_sample", lambda audio, rate, path, title: path.touch())
    with pytest.raises(KeyboardInterrupt):
        write.write_pair(np.zeros(8, dtype=np.float32), 8000, tmp_path / "sample_00_loglik_-1.000.wav", "t")
    assert list(tmp_path.iterdir()) == []

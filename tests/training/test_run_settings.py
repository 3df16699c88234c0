"""The run a user asked for: its stops, every setting kept on resume, a data folder found by its
files from any directory, and numbers checked before any step is spent."""

import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import types
from pathlib import Path

import numpy as np
import pytest

from sashimi import generate as generate_cmd
from sashimi import train as train_cmd
from sashimi.audio.dataset import AudioDataset, AudioNotice, folder_fingerprint, list_audio_files
from sashimi.core.config import TrainConfig
from sashimi.core.lock import exclusive
from sashimi.core.progress import LOG_INTERVAL
from sashimi.training import data, runs
from tests.helpers import assert_one_line_error, run_main, write

SPECS = Path(__file__).resolve().parents[2] / "specs" / "presets.json"
SMALL = ["--seq-len", "256", "--batch-size", "4", "--eval-batches", "1", "--device", "cpu"]


def start(argv: list[str]) -> runs.Start:
    return runs.starting_point(*train_cmd.parse(argv))


def test_a_run_stops_where_it_was_told_and_only_the_bare_demo_at_three_minutes():
    assert start(["--preset", "sc09", "--max-steps", "100000"]).config.max_minutes is None
    assert start(["--max-steps", "5", "--max-minutes", "inf"]).config.max_minutes == float("inf")
    assert start(["--max-minutes", "600"]).config.max_minutes == 600.0
    assert start(["--max-minutes", "0.5"]).config.max_minutes == 0.5  # any positive time
    demo = start([])
    assert demo.config.max_minutes == 3.0 and demo.config.max_steps is None
    assert demo.notes == ("neither --max-steps nor --max-minutes given: training stops after 3 minutes",)
    assert start(["--max-steps", "5"]).notes == ()


def test_help_shows_every_default_that_applies(capsys):
    with pytest.raises(SystemExit):
        train_cmd.parse(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    specs = json.loads(SPECS.read_text())
    tiny = specs["tiny"]
    shown = 0
    for f in dataclasses.fields(TrainConfig):
        if f.type is bool:
            continue
        if f.name in tiny["train"]:
            assert f"--{f.name.replace('_', '-')}" in text and f"tiny: {tiny['train'][f.name]})" in text, f.name
            shown += 1
        elif f.default is not None:
            assert f"(default: {f.default})" in text, f.name
            shown += 1
    assert shown >= 14
    assert f"(default: {specs['optimizer']['ssm_lr']:g}, specs/presets.json optimizer.ssm_lr)" in text
    assert f"(default: the preset's; tiny: {tiny['model']['dropout']})" in text
    assert "--allow-changed-data with --resume: continue although the data folder's files changed" in text


@pytest.fixture(scope="module")
def six_step_run(tmp_path_factory) -> tuple[Path, Path, str]:
    """A run of 6 steps trained from a relative --data path inside a folder, its stderr a file (not a
    terminal); returns (run, data, stderr)."""
    root = tmp_path_factory.mktemp("settings")
    data = root / "d10"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        write(data / f"clip{i:02d}.wav", rng.uniform(-0.5, 0.5, 4000).astype(np.float32))
    old, err = Path.cwd(), io.StringIO()
    try:
        os.chdir(root)
        argv = ["--data", "d10", "--out", "runs", "--max-steps", "6", "--eval-every", "3", "--sample-seconds", "0"]
        with contextlib.redirect_stderr(err):
            assert train_cmd.main([*argv, *SMALL]) == 0
    finally:
        os.chdir(old)
    (run,) = (root / "runs").iterdir()
    return run, data, err.getvalue()


def saved_train(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["train"]


def test_resume_keeps_every_setting_and_says_what_a_flag_replaced(six_step_run, tmp_path, capsys):
    run, data, _ = six_step_run
    copy = tmp_path / "run"  # the run moved to another place
    shutil.copytree(run, copy)
    before = saved_train(copy)
    assert before["data"] == str(data) and before["max_minutes"] is None  # stored resolved; no time limit
    code, err = run_main(train_cmd, ["--resume", str(copy), "--max-steps", "7"], capsys)
    assert code == 0 and "notice: --max-steps 7 replaces the run's 6" in err, err
    after = saved_train(copy)
    assert after == {**before, "max_steps": 7, "resume": str(copy)}  # nothing else rewritten with a default
    code, err = run_main(train_cmd, ["--resume", str(copy), "--eval-batches", "1", "--sample-seconds", "0"], capsys)
    assert code == 0 and "nothing to train: the run is at step 7" in err, err  # its own stop, kept
    assert "trained 0 steps" not in err and "unigram baseline" not in err  # no closing work without a step
    assert saved_train(copy)["sample_seconds"] == 0.0 and not (copy / "samples").exists()
    code, err = run_main(train_cmd, ["--resume", str(copy), "--eval-batches", "16"], capsys)
    assert_one_line_error(code, err, "--eval-batches 16 (the run has 1)")


def test_a_run_finds_its_data_by_its_files_not_its_name(six_step_run, tmp_path, capsys):
    run, data, _ = six_step_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    moved = tmp_path / "elsewhere"
    shutil.copytree(data, moved)
    code, err = run_main(train_cmd, ["--resume", str(copy), "--data", str(moved)], capsys)  # no step to take
    assert code == 0 and f"the data folder {moved} holds the files the run was trained on" in err, err
    assert saved_train(copy)["data"] == str(moved)
    (moved / "clip00.wav").unlink()
    code, err = run_main(train_cmd, ["--resume", str(copy), "--data", str(moved)], capsys)
    assert_one_line_error(code, err, f"the data folder {moved} changed since the checkpoint (12 files when")
    shutil.rmtree(moved)
    code, err = run_main(train_cmd, ["--resume", str(copy)], capsys)
    assert_one_line_error(code, err, f"the run's data folder {moved} does not exist", "--data")


def test_numbers_are_checked_before_a_run_folder_exists(six_step_run, tmp_path, capsys, monkeypatch):
    _, data, _ = six_step_run
    out = tmp_path / "runs"
    base = ["--data", str(data), "--out", str(out), "--max-steps", "1", *SMALL]
    code, err = run_main(train_cmd, [*base, "--sample-seconds", "1e9"], capsys)
    assert_one_line_error(code, err, "generating 1 x 16,000,000,000,000 samples", "lower --sample-seconds")
    monkeypatch.setenv("SASHIMI_MEMORY_LIMIT", "abc")
    code, err = run_main(train_cmd, base, capsys)
    assert_one_line_error(code, err, "SASHIMI_MEMORY_LIMIT must be a number of bytes; got 'abc'")
    monkeypatch.delenv("SASHIMI_MEMORY_LIMIT")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, err = run_main(train_cmd, [*base, "--batch-size", "5"], capsys)
    assert_one_line_error(code, err, "--batch-size 5 must be divisible by the number of processes 2")
    assert not out.exists() or not any(out.iterdir())


def test_a_bar_into_a_file_is_drawn_at_start_and_end_not_every_step(six_step_run):
    """Into a file the bar is drawn when it opens, when it closes, again after each line logged above
    it (the validations) and at most once every LOG_INTERVAL (5 s) between: as many times as the
    run's own time allows (six quick steps: 2 to 4), not at every step."""
    _, _, err = six_step_run
    seconds = float(re.search(r"trained 6 steps in (\d+) s", err)[1]) + 1  # printed rounded
    logged = len(re.findall(r"step \d+: validation", err))
    assert logged == 2 and 1 <= err.count("samples_per_s=") <= 2 + logged + seconds // LOG_INTERVAL, err
    assert "| 6/6 [" in err, err  # the bar runs to --max-steps


def test_a_run_or_an_output_folder_has_one_writer(six_step_run, trained, tmp_path, capsys):
    run, _, _ = six_step_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    with exclusive(copy, "training run"):
        code, err = run_main(train_cmd, ["--resume", str(copy), "--max-steps", "7"], capsys)
    assert_one_line_error(code, err, f"{copy} is in use by a training run, process {os.getpid()}")
    assert json.loads((copy / "config.json").read_text())["train"]["max_steps"] == 6  # untouched
    out = tmp_path / "out"
    argv = [
        "--checkpoint",
        str(trained / "checkpoint.pt"),
        "--out",
        str(out),
        "--length",
        "4",
        "--n-samples",
        "1",
        "--device",
        "cpu",
    ]
    out.mkdir()
    with exclusive(out, "generation"):
        code, err = run_main(generate_cmd, argv, capsys)
    assert_one_line_error(code, err, f"{out} is in use by a generation, process {os.getpid()}")
    assert list(out.iterdir()) == []
    assert run_main(generate_cmd, argv, capsys)[0] == 0
    assert sorted(p.suffix for p in out.iterdir()) == [".png", ".wav"]  # no lock file left


def test_degenerate_data_is_announced_with_its_numbers(tmp_path):
    silent = tmp_path / "silent"
    silent.mkdir()
    for i in range(3):
        write(silent / f"s{i}.wav", np.zeros(1000, np.float32))
    notes = data.degenerate(AudioDataset(silent, None, 4096, 8, "mulaw"), 8)
    assert notes == [
        "the 3 training files hold one value throughout (token 128: silence?): the model learns to repeat it, and "
        "its loss says nothing about audio",
        f"{1 - 3000 / (3 * 4096):.0%} of the training positions are padding (--seq-len 4096 on files of 1,000 "
        "samples on average): a shorter --seq-len trains on more audio a step",
        "--batch-size 8 on 3 training clips: each batch holds every clip about 2.7 times",
    ]
    assert notes[1].startswith("76% ")
    noise = tmp_path / "noise"
    noise.mkdir()
    for i in range(3):
        write(noise / f"n{i}.wav", np.random.default_rng(i).uniform(-0.5, 0.5, 1000).astype(np.float32))
    assert data.degenerate(AudioDataset(noise, None, 512, 8, "mulaw"), 6) == []  # 1000 of 1024 are audio
    half = tmp_path / "half"
    half.mkdir()
    write(half / "h.wav", np.random.default_rng(9).uniform(-0.5, 0.5, 2048).astype(np.float32))
    assert data.degenerate(AudioDataset(half, None, 4096, 8, "mulaw"), 1) == []  # half padding is not over half


def test_a_file_name_that_is_not_utf8_is_skipped_with_a_notice(tmp_path):
    write(tmp_path / "good.wav", np.zeros(100, np.float32))
    write(tmp_path / "bad.wav", np.zeros(100, np.float32))
    os.rename(os.fsencode(tmp_path / "bad.wav"), os.fsencode(tmp_path) + b"/caf\xe9.wav")  # Latin-1, not UTF-8
    with pytest.warns(AudioNotice, match=r"skipping b'.*caf\\xe9.wav': its name is not UTF-8"):
        assert list_audio_files(tmp_path) == [tmp_path / "good.wav"]
    with pytest.warns(AudioNotice):
        assert folder_fingerprint(tmp_path)["files"] == 1


def test_an_out_folder_that_cannot_be_made_is_named_with_its_cause(tmp_path, capsys):
    """A folder under a file cannot be made (as root too): the cause in words, not errno text."""
    file = tmp_path / "a-file"
    file.write_text("")
    for out, cause in ((file / "runs", "Not a directory"), (file, "it is a file")):
        code, err = run_main(train_cmd, ["--out", str(out), "--max-steps", "1", *SMALL], capsys)
        assert_one_line_error(code, err, f"cannot create a folder in {out}: {cause}")
        assert "Errno" not in err


def test_a_silent_folder_trains_with_a_notice_and_a_resumed_run_replaces_its_sample(tmp_path, capsys):
    """All-silent files: the notice says so, and the unigram baseline of a single value is 0.00 bits
    (not -0.00). The closing sample of the resumed run replaces the first one: one WAV in samples/."""
    data = tmp_path / "silent"
    data.mkdir()
    for i in range(12):
        write(data / f"s{i:02d}.wav", np.zeros(2000, np.float32))
    argv = ["--data", str(data), "--out", str(tmp_path / "runs"), "--max-steps", "1", "--sample-seconds", "0.01"]
    code, err = run_main(train_cmd, [*argv, *SMALL], capsys)
    assert code == 0, err
    assert "training files hold one value throughout (token 128: silence?)" in err, err
    assert "unigram baseline of the validation split 0.00 (" in err and "-0.00" not in err
    (run,) = (tmp_path / "runs").iterdir()
    first = sorted(p.name for p in (run / "samples").glob("*.wav"))
    code, err = run_main(train_cmd, ["--resume", str(run), "--max-steps", "2"], capsys)
    assert code == 0, err
    assert len(first) == 1 and len(list((run / "samples").glob("*.wav"))) == 1


def test_a_run_folder_is_made_under_an_out_that_does_not_exist_yet(tmp_path):
    out = tmp_path / "a" / "b" / "runs"
    first, second = runs.new_run_dir(out), runs.new_run_dir(out)
    assert first.parent == second.parent == out and first != second and first.is_dir() and second.is_dir()


def test_samples_per_s_counts_audio_not_padding_over_the_time(tmp_path, capsys, monkeypatch):
    """One file of 100 samples in clips of 256: every position past the audio is padding. A clock
    that advances 1 ms a reading (start, the loop's deadline check, the rate: 2 ms for one step)
    makes the bar's rate exact, one sample more or less moving it by 500: the batch's audio targets,
    counted off the dataset, over 2 ms."""
    from sashimi.training import loop

    data = tmp_path / "d"
    data.mkdir()
    write(data / "one.wav", np.random.default_rng(3).uniform(-0.5, 0.5, 100).astype(np.float32))
    per_clip = int((AudioDataset(data, None, 256, 8, "mulaw")[0][1] != -100).sum())
    readings = iter(range(10_000))
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(monotonic=lambda: next(readings) / 1000))
    argv = ["--data", str(data), "--out", str(tmp_path / "runs"), "--max-steps", "1", "--eval-every", "100"]
    code, err = run_main(train_cmd, [*argv, "--sample-seconds", "0", *SMALL], capsys)
    assert code == 0, err
    assert 0 < per_clip < 256 and f"samples_per_s={4 * per_clip / 0.002:,.0f}" in err, err


def test_every_training_setting_has_its_flag(capsys):
    """Each TrainConfig field, the bool ones included, is a flag of `python -m sashimi.train`."""
    with pytest.raises(SystemExit):
        train_cmd.parse(["--help"])
    text = capsys.readouterr().out
    missing = [f.name for f in dataclasses.fields(TrainConfig) if f"--{f.name.replace('_', '-')}" not in text]
    assert not missing

"""Faults a run must survive without losing anything: concurrent starts, kill -9 then resume, a full
disk while checkpointing, a diverging loss or diverged weights, resumes with conflicting flags,
a metrics log written past the checkpoint, a no-op resume, foreign checkpoints, the umask."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from sashimi import train as train_cmd
from sashimi.core.config import TrainConfig
from sashimi.io import checkpoint
from sashimi.training import loop, runs
from tests.helpers import ROOT, assert_one_line_error, losses, run_main, train_config


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(runs.time, "strftime", lambda fmt: "20260101-000000")
    made = []
    threads = [threading.Thread(target=lambda: made.append(runs.new_run_dir(tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 8 and all(p.is_dir() for p in made)
    assert sorted(p.name for p in made)[0] == "20260101-000000"


def test_a_full_disk_during_a_checkpoint_is_one_error_and_keeps_the_previous_one(
    audio_folder, tmp_path, monkeypatch, capsys
):
    run_dir = loop.train(train_config(audio_folder, tmp_path, max_steps=2, eval_every=2))
    before = (run_dir / "checkpoint.pt").read_bytes()

    def full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/3: file write "
            "failed"
        )

    monkeypatch.setattr(checkpoint.torch, "save", full)
    code, err = run_main(train_cmd, ["--resume", str(run_dir), "--max-steps", "4", "--eval-every", "2"], capsys)
    assert_one_line_error(
        code,
        err,
        "cannot write checkpoint",
        "the write stopped short (PytorchStreamWriter failed",
        "MB free on its disk",
    )
    assert "enforce fail" not in err
    assert (run_dir / "checkpoint.pt").read_bytes() == before
    assert not list(run_dir.glob(".*.tmp"))


def test_a_nan_loss_stops_without_a_checkpoint_and_names_the_kept_one(audio_folder, tmp_path, monkeypatch, capsys):
    real = loop.optimization_step
    monkeypatch.setattr(loop, "optimization_step", lambda *a, **k: float("nan") if loop_step[0] >= 2 else real(*a, **k))
    loop_step = [0]
    original_append = runs.append_jsonl

    def count(path, record):
        loop_step[0] = record["step"]
        original_append(path, record)

    monkeypatch.setattr(runs, "append_jsonl", count)
    code, err = run_main(
        train_cmd,
        [
            "--data",
            str(audio_folder),
            "--seq-len",
            "256",
            "--batch-size",
            "4",
            "--max-steps",
            "6",
            "--eval-every",
            "2",
            "--eval-batches",
            "2",
            "--sample-seconds",
            "0",
            "--out",
            str(tmp_path),
        ],
        capsys,
    )
    [run_dir] = list(tmp_path.iterdir())
    assert_one_line_error(
        code, err, "loss became nan at step 3", f"the last good checkpoint is kept: {run_dir / 'checkpoint.pt'}"
    )
    assert checkpoint.load(run_dir / "checkpoint.pt")["step"] == 2


def test_a_nan_loss_before_any_checkpoint_says_there_is_none(audio_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loop, "optimization_step", lambda *a, **k: float("nan"))
    code, err = run_main(
        train_cmd,
        [
            "--data",
            str(audio_folder),
            "--seq-len",
            "256",
            "--max-steps",
            "3",
            "--sample-seconds",
            "0",
            "--out",
            str(tmp_path),
        ],
        capsys,
    )
    assert_one_line_error(code, err, "loss became nan at step 1", "no checkpoint was written")
    [run_dir] = list(tmp_path.iterdir())
    assert not (run_dir / "checkpoint.pt").exists()


def test_diverged_weights_are_never_checkpointed(audio_folder, tmp_path, monkeypatch):
    """A finite loss whose update left NaN weights (e.g. an overflowing step): validation refuses to save them."""
    real = loop.optimization_step

    def poison(loss_model, model, *args, **kwargs):
        loss = real(loss_model, model, *args, **kwargs)
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))
        return loss

    monkeypatch.setattr(loop, "optimization_step", poison)
    with pytest.raises(FloatingPointError, match="diverged by step 1.*no checkpoint was written"):
        loop.train(train_config(audio_folder, tmp_path, max_steps=1))
    assert not list(tmp_path.glob("*/checkpoint.pt"))


@pytest.fixture(scope="module")
def trained_four_steps(audio_folder, tmp_path_factory):
    return loop.train(
        train_config(audio_folder, tmp_path_factory.mktemp("four_steps") / "runs", max_steps=4, eval_every=2)
    )


@pytest.fixture
def four_steps(trained_four_steps, tmp_path):
    """A run folder at step 4 (checkpoints at 2 and 4): a copy per test, which may change it; trained once."""
    return Path(shutil.copytree(trained_four_steps, tmp_path / "runs" / trained_four_steps.name))


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--lr", "0.01"),
        ("--seed", "7"),
        ("--bits", "16"),
        ("--seq-len", "512"),
        ("--preset", "sc09"),
        ("--eval-every", "3"),
    ],
)
def test_resume_refuses_a_flag_that_conflicts_with_the_run(four_steps, flag, value, capsys):
    code, err = run_main(train_cmd, ["--resume", str(four_steps), "--max-steps", "6", flag, value], capsys)
    assert_one_line_error(code, err, f"{flag} {value}", "(the run has", "--init")
    assert checkpoint.load(four_steps / "checkpoint.pt")["step"] == 4


def test_resume_keeps_flags_that_agree_and_applies_the_stopping_rule(four_steps, audio_folder):
    run_dir = loop.train(
        TrainConfig(
            resume=str(four_steps),
            data=str(audio_folder),
            lr=0.004,
            max_steps=6,
            max_minutes=None,
            device="cpu",
            sample_seconds=0.0,
        )
    )
    assert checkpoint.load(run_dir / "checkpoint.pt")["step"] == 6


def test_resume_drops_metrics_logged_after_the_checkpoint(four_steps):
    """A crash after step 4's checkpoint left records of steps 5-6 and half a line: the resumed
    log has each step once."""
    with open(four_steps / "metrics.jsonl", "a") as f:
        f.write(
            json.dumps({"kind": "train", "step": 5, "loss": 9.0})
            + "\n"
            + json.dumps({"kind": "train", "step": 6, "loss": 9.0})
            + '\n{"kind": "tr'
        )
    loop.train(TrainConfig(resume=str(four_steps), max_steps=6, max_minutes=None, device="cpu", sample_seconds=0.0))
    train_steps = [r["step"] for r in records(four_steps) if r["kind"] == "train"]
    assert train_steps == [1, 2, 3, 4, 5, 6]
    assert 9.0 not in losses(four_steps).values()


def test_a_no_op_resume_adds_nothing(four_steps, capsys):
    before = (four_steps / "metrics.jsonl").read_text()
    code, err = run_main(train_cmd, ["--resume", str(four_steps), "--max-steps", "4"], capsys)
    assert code == 0 and "nothing to train: the run is at step 4" in err
    assert (four_steps / "metrics.jsonl").read_text() == before


def test_resume_of_a_weights_only_checkpoint_points_to_init(tmp_path, capsys):
    checkpoint.save(
        {"config": {"model": {"bits": 8}, "train": {"preset": "sc09"}}, "model": {}}, tmp_path / "imported.pt"
    )
    code, err = run_main(train_cmd, ["--resume", str(tmp_path / "imported.pt")], capsys)
    assert_one_line_error(code, err, "weights only", "--init")


def test_resume_of_a_checkpoint_with_unknown_settings_names_them(four_steps, capsys):
    payload = checkpoint.load(four_steps / "checkpoint.pt")
    payload["config"]["train"]["warp_drive"] = 9
    checkpoint.save(payload, four_steps / "checkpoint.pt")
    code, err = run_main(train_cmd, ["--resume", str(four_steps)], capsys)
    assert_one_line_error(code, err, "warp_drive")


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_checkpoints_respect_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        path = checkpoint.save({"config": {}, "model": {}}, tmp_path / "ck.pt")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


@pytest.mark.nightly  # a whole run killed and resumed, 10 s; resume == a straight run stays in make test
def test_kill_9_then_resume_equals_a_straight_run(audio_folder, tmp_path):
    """SIGKILL in the middle of training (between checkpoints): the checkpoint on disk loads, and
    resuming from it reproduces a straight run's losses exactly."""
    args = [
        "--data",
        str(audio_folder),
        "--seq-len",
        "256",
        "--batch-size",
        "4",
        "--eval-every",
        "2",
        "--eval-batches",
        "2",
        "--sample-seconds",
        "0",
        "--max-minutes",
        "5",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }  # as this test process: same sums
    proc = subprocess.Popen(
        [sys.executable, "-m", "sashimi.train", *args, "--max-steps", "400", "--out", str(tmp_path / "killed")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    ckpts = []
    while time.monotonic() < deadline and not ckpts:
        ckpts = list((tmp_path / "killed").glob("*/checkpoint.pt"))
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpts, "no checkpoint appeared within 2 minutes"
    run_dir = ckpts[0].parent
    step = checkpoint.load(run_dir / "checkpoint.pt")["step"]
    loop.train(TrainConfig(resume=str(run_dir), max_steps=step + 2, max_minutes=None, device="cpu", sample_seconds=0.0))
    straight = loop.train(
        train_config(audio_folder, tmp_path / "straight", max_steps=step + 2, eval_every=2, eval_batches=2)
    )
    a, b = losses(straight), losses(run_dir)
    assert sorted(b) == list(range(1, step + 3))
    assert [a[s] for s in range(1, step + 3)] == [b[s] for s in range(1, step + 3)]


@pytest.mark.parametrize("finite", [True, False])
def test_ctrl_c_saves_the_run_where_it_stands_unless_its_weights_are_not_finite(
    finite, audio_folder, tmp_path, monkeypatch, capsys
):
    """Ctrl-C during the 3rd step: the run is saved at step 2 and the message says how to resume;
    with non-finite weights nothing is saved (a checkpoint would poison the resume)."""
    real, calls = loop.optimization_step, []

    def step(loss_model, model, *args):
        calls.append(1)
        if len(calls) == 3:
            if not finite:
                with torch.no_grad():
                    next(model.parameters()).fill_(float("nan"))
            raise KeyboardInterrupt
        return real(loss_model, model, *args)

    monkeypatch.setattr(loop, "optimization_step", step)
    with pytest.raises(KeyboardInterrupt):
        loop.train(train_config(audio_folder, tmp_path / "runs", eval_every=100))
    err = capsys.readouterr().err
    (run_dir,) = (tmp_path / "runs").iterdir()
    if finite:
        saved = run_dir / "checkpoint.pt"
        assert f"interrupted at step 2: checkpoint saved to {saved}; resume with --resume {run_dir}" in err
        assert checkpoint.load(saved)["step"] == 2
    else:
        assert "interrupted at step 2 with non-finite weights: nothing saved" in err
        assert not (run_dir / "checkpoint.pt").exists()

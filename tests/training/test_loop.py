"""Training: the loss decreases, resume is bit-exact, DDP equals one process, bad input of the train command."""

import os
import subprocess
import sys

import pytest
import torch

from sashimi import train as train_cmd
from sashimi.core.config import TrainConfig
from sashimi.harness.verdict import assert_close
from sashimi.io import checkpoint
from sashimi.training import loop
from tests.helpers import ROOT, SPOKEN_DIGITS, assert_one_line_error, losses, run_main, train_config


def test_loss_decreases_over_30_steps(audio_folder, tmp_path):
    run_dir = loop.train(train_config(audio_folder, tmp_path, max_steps=30, eval_every=15, lr=0.004))
    curve = losses(run_dir)
    assert len(curve) == 30
    first, last = sum(curve[s] for s in range(1, 6)) / 5, sum(curve[s] for s in range(26, 31)) / 5
    assert last < first - 0.1, (first, last)
    assert (run_dir / "loss.png").stat().st_size > 0 and (run_dir / "checkpoint.pt").is_file()
    assert len(losses(run_dir, "validation")) == 2


def test_resume_is_bit_exact(audio_folder, tmp_path):
    straight = loop.train(train_config(audio_folder, tmp_path / "a", max_steps=8))
    interrupted = loop.train(train_config(audio_folder, tmp_path / "b", max_steps=4))
    resumed = loop.train(TrainConfig(resume=str(interrupted), max_steps=8, max_minutes=None, device="cpu"))
    assert resumed == interrupted
    a, b = losses(straight), losses(resumed)
    assert sorted(b) == list(range(1, 9))
    assert [a[s] for s in range(1, 9)] == [b[s] for s in range(1, 9)]  # exactly, not approximately
    pa, pb = checkpoint.load(straight / "checkpoint.pt")["model"], checkpoint.load(resumed / "checkpoint.pt")["model"]
    assert all(torch.equal(pa[k], pb[k]) for k in pa)


def test_checkpoint_holds_everything_to_resume(audio_folder, tmp_path):
    run_dir = loop.train(train_config(audio_folder, tmp_path, max_steps=4))
    payload = checkpoint.load(run_dir / "checkpoint.pt")
    assert {"config", "model", "optimizer", "scheduler", "rng", "step"} <= set(payload)
    assert payload["step"] == 4 and payload["config"]["train"]["seq_len"] == 256
    assert not list(run_dir.glob(".*.tmp"))  # the atomic write left nothing behind


@pytest.mark.slow
def test_distributed_equals_one_process(audio_folder, tmp_path):
    """2 CPU processes (gloo) after k steps hold the parameters of one process on the same global batch."""
    args = ["--preset", "tiny", "--data", str(audio_folder), "--seq-len", "256", "--batch-size", "4", "--max-steps", "3", "--max-minutes", "5",
            "--eval-every", "3", "--eval-batches", "1", "--sample-seconds", "0", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "sashimi.train"]
    subprocess.run([*torchrun, *args, "--out", str(tmp_path / "ddp")], check=True, env=env, cwd=ROOT, capture_output=True, timeout=600)
    subprocess.run([sys.executable, "-m", "sashimi.train", *args, "--out", str(tmp_path / "one")], check=True, env=env, cwd=ROOT, capture_output=True, timeout=600)
    (ddp,), (one,) = list((tmp_path / "ddp").iterdir()), list((tmp_path / "one").iterdir())
    a, b = checkpoint.load(ddp / "checkpoint.pt")["model"], checkpoint.load(one / "checkpoint.pt")["model"]
    moved = checkpoint.load(one / "checkpoint.pt")
    assert moved["step"] == 3
    for key in a:
        if a[key].is_floating_point():
            assert_close(a[key], b[key], "ddp_vs_single_process")


def test_empty_data_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, err = run_main(train_cmd, ["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "runs"), "--max-steps", "1"], capsys)
    assert_one_line_error(code, err, "no .wav or .flac files")


def test_folder_of_non_audio_files(tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not audio")
    (folder / "data.csv").write_text("1,2,3")
    code, err = run_main(train_cmd, ["--data", str(folder), "--out", str(tmp_path / "runs"), "--max-steps", "1"], capsys)
    assert_one_line_error(code, err, "no .wav or .flac files")


def test_only_corrupt_audio_is_an_error(tmp_path, capsys):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    for i in range(6):
        (folder / f"clip{i}.wav").write_bytes(b"RIFF\x00\x00garbage" * 3)
    with pytest.warns(UserWarning, match="clip"):
        code, err = run_main(train_cmd, ["--data", str(folder), "--out", str(tmp_path / "runs"), "--max-steps", "1"], capsys)
    assert_one_line_error(code, err, "could be read")


def test_seq_len_not_a_multiple_of_the_pools(tmp_path, capsys):
    code, err = run_main(train_cmd, ["--seq-len", "1000", "--out", str(tmp_path / "runs"), "--max-steps", "1"], capsys)
    assert_one_line_error(code, err, "multiple of prod(pool) = 16", "1000")


@pytest.mark.slow
@pytest.mark.skipif(not SPOKEN_DIGITS.is_dir(), reason=f"spoken-digits data not found at {SPOKEN_DIGITS}")
def test_trains_briefly_on_spoken_digits(tmp_path):
    run_dir = loop.train(train_config(SPOKEN_DIGITS, tmp_path, max_steps=3, eval_every=3, eval_batches=1, seq_len=512))
    assert len(losses(run_dir)) == 3 and len(losses(run_dir, "validation")) == 1
    assert all(0 < v < 10 for v in losses(run_dir).values())

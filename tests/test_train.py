"""Training: the loss decreases, resume is bit-exact, DDP equals one process, 16-bit loss is chunked, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sashimi import checkpoint, data, metrics, train
from sashimi.spec import assert_close

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("audio")
    data.write_synthetic_dataset(folder, n_clips=36, seconds=0.25)
    return folder


def config(folder: Path, out: Path, **overrides) -> train.TrainConfig:
    base = dict(preset="tiny", data=str(folder), seq_len=256, batch_size=4, max_steps=8, max_minutes=None, out=str(out), eval_every=4,
                eval_batches=2, sample_seconds=0.0, device="cpu")
    return train.TrainConfig(**{**base, **overrides})


def losses(run_dir: Path, kind: str = "train") -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["kind"] == kind}


def test_loss_decreases_over_30_steps(audio_folder, tmp_path):
    run_dir = train.train(config(audio_folder, tmp_path, max_steps=30, eval_every=15, lr=0.004))
    curve = losses(run_dir)
    assert len(curve) == 30
    first, last = sum(curve[s] for s in range(1, 6)) / 5, sum(curve[s] for s in range(26, 31)) / 5
    assert last < first - 0.1, (first, last)
    assert (run_dir / "loss.png").stat().st_size > 0 and (run_dir / "checkpoint.pt").is_file()
    assert len(losses(run_dir, "validation")) == 2


def test_resume_is_bit_exact(audio_folder, tmp_path):
    straight = train.train(config(audio_folder, tmp_path / "a", max_steps=8))
    interrupted = train.train(config(audio_folder, tmp_path / "b", max_steps=4))
    resumed = train.train(train.TrainConfig(resume=str(interrupted), max_steps=8, max_minutes=None, device="cpu"))
    assert resumed == interrupted
    a, b = losses(straight), losses(resumed)
    assert sorted(b) == list(range(1, 9))
    assert [a[s] for s in range(1, 9)] == [b[s] for s in range(1, 9)]  # exactly, not approximately
    pa, pb = checkpoint.load(straight / "checkpoint.pt")["model"], checkpoint.load(resumed / "checkpoint.pt")["model"]
    assert all(torch.equal(pa[k], pb[k]) for k in pa)


def test_checkpoint_holds_everything_to_resume(audio_folder, tmp_path):
    run_dir = train.train(config(audio_folder, tmp_path, max_steps=4))
    payload = checkpoint.load(run_dir / "checkpoint.pt")
    assert {"config", "model", "optimizer", "scheduler", "rng", "step"} <= set(payload)
    assert payload["step"] == 4 and payload["config"]["train"]["seq_len"] == 256
    assert not list(run_dir.glob(".*.tmp"))  # the atomic write left nothing behind


def test_ssm_parameters_get_their_own_group(audio_folder):
    from sashimi.model import ModelConfig, SashimiLM

    model = SashimiLM(ModelConfig(d_model=4, n_layers=1, d_state=4))
    groups = train.param_groups(model, lr=0.004, ssm_lr=0.001)
    ssm_names = {n for n, p in model.named_parameters() if any(p is q for q in groups[1]["params"])}
    assert groups[1]["lr"] == 0.001 and groups[1]["weight_decay"] == 0.0 and groups[0]["lr"] == 0.004
    assert ssm_names and all(n.rsplit(".", 1)[-1] in ("inv_dt", "A_real", "A_imag", "B", "P") for n in ssm_names)
    assert len(ssm_names) == 5 * sum(1 for n, _ in model.named_parameters() if n.endswith("kernel.inv_dt"))
    assert not any(n.endswith(("kernel.C", "layer.D")) for n in ssm_names)


def test_chunked_16bit_loss_equals_plain_cross_entropy():
    torch.manual_seed(0)
    features = torch.randn(2, 64, 8, requires_grad=True)
    weight, bias = torch.randn(65536, 8) * 0.1, torch.randn(65536) * 0.1
    targets = torch.randint(0, 65536, (2, 64))
    targets[0, :5] = -100
    chunked, n1 = metrics.loss_sum_and_count(features, weight, bias, targets, chunked=True)
    (g_chunked,) = torch.autograd.grad(chunked, features)
    plain, n2 = metrics.loss_sum_and_count(features, weight, bias, targets, chunked=False)
    (g_plain,) = torch.autograd.grad(plain, features)
    assert n1 == n2 == 123
    assert_close(chunked / n1, plain / n2, "chunked_vs_plain_cross_entropy")
    assert_close(g_chunked, g_plain, "chunked_vs_plain_cross_entropy")


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


def run_main(module, argv, capsys):
    code = module.main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_line_error(code, err, *needles):
    assert code != 0
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_empty_data_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, err = run_main(train, ["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "runs"), "--max-steps", "1"], capsys)
    assert_one_line_error(code, err, "no .wav or .flac files")


def test_folder_of_non_audio_files(tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not audio")
    (folder / "data.csv").write_text("1,2,3")
    code, err = run_main(train, ["--data", str(folder), "--out", str(tmp_path / "runs"), "--max-steps", "1"], capsys)
    assert_one_line_error(code, err, "no .wav or .flac files")


def test_only_corrupt_audio_is_an_error(tmp_path, capsys):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    for i in range(6):
        (folder / f"clip{i}.wav").write_bytes(b"RIFF\x00\x00garbage" * 3)
    with pytest.warns(UserWarning, match="clip"):
        code, err = run_main(train, ["--data", str(folder), "--out", str(tmp_path / "runs"), "--max-steps", "1"], capsys)
    assert_one_line_error(code, err, "could be read")


def test_seq_len_not_a_multiple_of_the_pools(tmp_path, capsys):
    code, err = run_main(train, ["--seq-len", "1000", "--out", str(tmp_path / "runs"), "--max-steps", "1"], capsys)
    assert_one_line_error(code, err, "multiple of prod(pool) = 16", "1000")


SPOKEN_DIGITS = ROOT.parent / "shared" / "data" / "spoken-digits"


@pytest.mark.slow
@pytest.mark.skipif(not SPOKEN_DIGITS.is_dir(), reason=f"spoken-digits data not found at {SPOKEN_DIGITS}")
def test_trains_briefly_on_spoken_digits(tmp_path):
    run_dir = train.train(config(SPOKEN_DIGITS, tmp_path, max_steps=3, eval_every=3, eval_batches=1, seq_len=512))
    assert len(losses(run_dir)) == 3 and len(losses(run_dir, "validation")) == 1
    assert all(0 < v < 10 for v in losses(run_dir).values())

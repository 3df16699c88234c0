"""Training: the loss decreases, resume is bit-exact (also with dropout and a plateau schedule that
fires), the schedule watches the validation loss, DDP equals one process, bad input of the train command."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import soundfile
import torch

from sashimi import train as train_cmd
from sashimi.audio.dataset import AudioDataset
from sashimi.core.config import OptimizerConfig, TrainConfig
from sashimi.harness.verdict import assert_close
from sashimi.io import checkpoint
from sashimi.model.lm import SashimiLM
from sashimi.training import evaluation, loop
from sashimi.training.optimizer import make_optimizer, param_groups
from tests.helpers import (
    ROOT,
    SPOKEN_DIGITS,
    assert_one_line_error,
    losses,
    run_main,
    tiny_config,
    train_config,
)


def test_loss_decreases_over_20_steps(audio_folder, tmp_path):
    """The mean of the last 5 losses at least 0.1 nats below the first 5 (seeds 0-3 fell 0.44-0.56)."""
    run_dir = loop.train(train_config(audio_folder, tmp_path, max_steps=20, eval_every=10, lr=0.004, seq_len=128))
    curve = losses(run_dir)
    assert len(curve) == 20
    first, last = sum(curve[s] for s in range(1, 6)) / 5, sum(curve[s] for s in range(16, 21)) / 5
    assert last < first - 0.1, (first, last)
    assert (run_dir / "loss.png").stat().st_size > 0 and (run_dir / "checkpoint.pt").is_file()
    assert len(losses(run_dir, "validation")) == 2


def test_the_closing_report_sets_the_last_validation_beside_the_unigram_baseline(audio_folder, tmp_path, capsys):
    """The line's numbers: the last validation record's bits, and the entropy of the validation
    split's token histogram (every position: --eval-batches covers the split), counted here with numpy."""
    run_dir = loop.train(train_config(audio_folder, tmp_path, max_steps=2, eval_every=2, eval_batches=1000))
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("validation "))
    match = re.fullmatch(
        r"validation (\S+) bits/sample, unigram baseline of the validation split (\S+) \((\S+) (below|above)\)", line
    )
    assert match, line
    bits, baseline, gap = (float(match[k]) for k in (1, 2, 3))
    last = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["kind"] == "validation" and last["step"] == 2 and bits == round(last["bits_per_sample"], 2)
    val = AudioDataset(audio_folder, "validation", 256, 8, "mulaw")
    _, counts = np.unique(np.concatenate(val.tokens), return_counts=True)
    p = counts / counts.sum()
    assert baseline == round(float(-(p * np.log2(p)).sum()), 2)
    assert (
        match[4] == ("below" if last["bits_per_sample"] <= baseline else "above")
        and abs(gap - abs(baseline - bits)) <= 0.011
    )


def entropy_bits(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


@pytest.mark.parametrize("eval_batches", [1, 2])
def test_the_unigram_baseline_counts_the_positions_validated(audio_folder, eval_batches):
    """The baseline of the clips the first `eval_batches` batches of 8 hold (their targets, padding
    left out), counted here clip by clip with numpy; not the whole split's, which differs."""
    val = AudioDataset(audio_folder, "validation", 256, 8, "mulaw")
    assert len(val) > 8 * eval_batches
    targets = np.concatenate([val[i][1].numpy() for i in range(8 * eval_batches)])
    want = entropy_bits(targets[targets != -100])
    assert evaluation.validation_unigram_bits(val, 8, eval_batches) == pytest.approx(want, rel=1e-12)
    every = np.concatenate([val[i][1].numpy() for i in range(len(val))])
    whole = entropy_bits(every[every != -100])
    assert abs(want - whole) > 1e-3, (want, whole)
    assert evaluation.validation_unigram_bits(val, 8, 1000) == pytest.approx(whole, rel=1e-12)


def test_resume_is_bit_exact(audio_folder, tmp_path):
    straight = loop.train(train_config(audio_folder, tmp_path / "a", max_steps=8))
    interrupted = loop.train(train_config(audio_folder, tmp_path / "b", max_steps=4))
    resumed = loop.train(
        TrainConfig(resume=str(interrupted), max_steps=8, max_minutes=None, device="cpu", sample_seconds=0.0)
    )
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


@pytest.mark.nightly  # two training processes, 13 s: the nightly job (docs: README, "Tests")
def test_distributed_equals_one_process(audio_folder, tmp_path):
    """2 CPU processes (gloo) after 2 steps hold the parameters and the Adam moments of one process
    on the same global batches. Kept out of the slow marker so that sharding and gradient-scaling
    bugs fail the fast suite: tiny clips and 2 steps (about 30 s, most of it starting torchrun).

    The gradient clip is set out of reach: clipping rescales the gradient to a fixed norm, which
    would hide a wrong gradient scale; the first Adam moment exp_avg is proportional to the
    gradient, so a gradient off by a factor shows there even where Adam's update does not."""
    args = [
        "--preset",
        "tiny",
        "--data",
        str(audio_folder),
        "--seq-len",
        "64",
        "--batch-size",
        "4",
        "--max-steps",
        "2",
        "--max-minutes",
        "5",
        "--eval-every",
        "2",
        "--eval-batches",
        "1",
        "--sample-seconds",
        "0",
        "--device",
        "cpu",
        "--grad-clip",
        "1e9",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "sashimi.train",
    ]
    subprocess.run(
        [*torchrun, *args, "--out", str(tmp_path / "ddp")],
        check=True,
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )
    one = loop.train(train_cmd.parse_args([*args, "--out", str(tmp_path / "one")]))
    (ddp,) = list((tmp_path / "ddp").iterdir())
    a, b = checkpoint.load(ddp / "checkpoint.pt"), checkpoint.load(one / "checkpoint.pt")
    assert a["step"] == b["step"] == 2
    for step in (1, 2):
        assert_close(losses(ddp)[step], losses(one)[step], "ddp_vs_single_process")
    # The parameters, where Adam's step does not amplify the gradient's rounding. Its first step,
    # lr g / (|g| + eps), has slope 1 / eps at g = 0: where a gradient cancels between the shares
    # (1e-9 from shares of 1e-3 on the synthetic corpus) that step is made of float32 rounding, and
    # how far the runs drift there depends on the CPU's BLAS (1.9e-5 on one machine, 1.8e-4 on
    # another). There the moments below compare the gradient itself; the parameters are compared
    # where the first gradient was far above eps (steps after the first divide by the running RMS).
    model, _ = checkpoint.load_model(one / "checkpoint.pt")
    names = {id(p): n for n, p in model.named_parameters()}
    order = [
        names[id(p)] for group in param_groups(model, 0.0, 0.0, OptimizerConfig.from_specs()) for p in group["params"]
    ]  # the optimizer's indices
    group = b["optimizer"]["param_groups"][0]
    compared = total = 0
    for i, name in enumerate(order):
        state = b["optimizer"]["state"][i]
        steady = first_gradient_magnitude(state["exp_avg"], state["exp_avg_sq"], *group["betas"]) > 1e3 * group["eps"]
        assert_close(a["model"][name][steady], b["model"][name][steady], "ddp_vs_single_process")
        compared, total = compared + int(steady.sum()), total + steady.numel()
    assert compared > 0.8 * total, f"only {compared} of {total} parameters had a first gradient far above Adam's eps"
    moments = 0
    for i, state in b["optimizer"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            # relative to each tensor's largest entry: the moments are far below the tolerance's atol
            scale = float(state[name].abs().max())
            if scale > 0:
                assert_close(
                    a["optimizer"]["state"][i][name] / scale, state[name] / scale, "ddp_vs_single_process_moments"
                )
                moments += 1
    assert moments > 0


def first_gradient_magnitude(m: torch.Tensor, v: torch.Tensor, beta1: float, beta2: float) -> torch.Tensor:
    """A lower bound on |g1| from Adam's moments after two steps, m = b1 (1 - b1) g1 + (1 - b1) g2 and
    v = b2 (1 - b2) g1^2 + (1 - b2) g2^2: g1 is a root of the quadratic these give (with
    g2 = k - b1 g1, k = m / (1 - b1)); the smaller root in magnitude bounds it from below."""
    m, v = m.double(), v.double()
    k = m / (1 - beta1)
    qa = (1 - beta2) * (beta2 + beta1**2)
    qb = -2 * (1 - beta2) * beta1 * k
    qc = (1 - beta2) * k**2 - v
    root = (qb**2 - 4 * qa * qc).clamp(min=0).sqrt()
    return torch.minimum((-qb + root).abs(), (-qb - root).abs()) / (2 * qa)


def test_first_gradient_magnitude_recovers_the_first_gradient():
    """Against moments computed from known gradients: the bound never exceeds |g1|, and it tells
    cancelled first gradients from large ones."""
    g1 = torch.tensor([1e-9, -3e-3, 2e-3, 0.0], dtype=torch.float64)
    g2 = torch.tensor([2e-3, 1e-3, 2e-3, -1e-3], dtype=torch.float64)
    b1, b2 = 0.9, 0.999
    m = b1 * (1 - b1) * g1 + (1 - b1) * g2
    v = b2 * (1 - b2) * g1**2 + (1 - b2) * g2**2
    bound = first_gradient_magnitude(m, v, b1, b2)
    assert bool((bound <= g1.abs() * (1 + 1e-9) + 1e-15).all())
    assert bound[0] < 1e-8 and bound[3] < 1e-8  # a cancelled first gradient is never called large
    assert bound[1] > 1e-3 and bound[2] > 1e-3  # first gradients of 2e-3 and 3e-3 are seen as large


def test_empty_data_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, err = run_main(
        train_cmd, ["--data", str(tmp_path / "empty"), "--out", str(tmp_path / "runs"), "--max-steps", "1"], capsys
    )
    assert_one_line_error(code, err, "no .wav or .flac files")


def test_folder_of_non_audio_files(tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not audio")
    (folder / "data.csv").write_text("1,2,3")
    code, err = run_main(
        train_cmd, ["--data", str(folder), "--out", str(tmp_path / "runs"), "--max-steps", "1"], capsys
    )
    assert_one_line_error(code, err, "no .wav or .flac files")


def test_only_corrupt_audio_is_an_error(tmp_path, capsys):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    for i in range(6):
        (folder / f"clip{i}.wav").write_bytes(b"RIFF\x00\x00garbage" * 3)
    code, err = run_main(
        train_cmd, ["--data", str(folder), "--out", str(tmp_path / "runs"), "--max-steps", "1"], capsys
    )
    assert_one_line_error(code, err, "could be read")
    notes = [line for line in err.splitlines() if line.startswith("notice:")]
    assert notes and all(line.startswith(f"notice: skipping {folder}/clip") for line in notes), (
        err
    )  # one line each, no source line


def test_seq_len_not_a_multiple_of_the_pools(tmp_path, capsys):
    code, err = run_main(train_cmd, ["--seq-len", "1000", "--out", str(tmp_path / "runs"), "--max-steps", "1"], capsys)
    assert_one_line_error(code, err, "multiple of prod(pool) = 16", "1000")


@pytest.mark.slow
@pytest.mark.external
@pytest.mark.skipif(not SPOKEN_DIGITS.is_dir(), reason=f"spoken-digits data not found at {SPOKEN_DIGITS}")
def test_trains_briefly_on_spoken_digits(tmp_path):
    run_dir = loop.train(train_config(SPOKEN_DIGITS, tmp_path, max_steps=3, eval_every=3, eval_batches=1, seq_len=512))
    assert len(losses(run_dir)) == 3 and len(losses(run_dir, "validation")) == 1
    assert all(0 < v < 10 for v in losses(run_dir).values())


# --- resume with dropout and a plateau schedule that fires --------------------------------------
#
# specs' plateau patience (20 validations) cannot run out in a test-sized run, so these tests
# replace OptimizerConfig.from_specs by the spec with a small patience (factor and everything
# else as in specs). With lr 0.03 the validation loss of this tiny run rises from step 2 to 4,
# so the schedule fires at the step-4 validation; the tests assert that it did.

RESUME_RUN = dict(seq_len=64, batch_size=2, eval_every=2, eval_batches=1, dropout=0.1, lr=0.03)


def spec_with_patience(patience: int):
    spec = OptimizerConfig.from_specs()
    return classmethod(lambda cls: dataclasses.replace(spec, plateau_patience=patience))


def records(run_dir, kind: str) -> dict[int, dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in lines if r["kind"] == kind}


def assert_same_state(a, b, where: str = "") -> None:
    """Equal nested dicts / lists of tensors and plain values, exactly."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def straight_plateau_run(audio_folder, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(OptimizerConfig, "from_specs", spec_with_patience(0))
        return loop.train(train_config(audio_folder, tmp_path_factory.mktemp("straight"), max_steps=6, **RESUME_RUN))


# stopped on a validation step: in the nightly job (test_resume_is_bit_exact stops there in make test)
@pytest.mark.parametrize("stop", [pytest.param(2, marks=pytest.mark.nightly), 3])
def test_resume_with_dropout_and_a_firing_plateau_equals_a_straight_run(
    straight_plateau_run, audio_folder, tmp_path, monkeypatch, stop
):
    """Stopped at step 2 (on a validation step) or 3 (between two), then resumed to step 6: the
    losses, learning rates, parameters, optimizer, schedule, RNG and best loss are a straight run's, bit for bit."""
    monkeypatch.setattr(OptimizerConfig, "from_specs", spec_with_patience(0))
    straight = straight_plateau_run
    interrupted = loop.train(train_config(audio_folder, tmp_path, max_steps=stop, **RESUME_RUN))
    resumed = loop.train(
        TrainConfig(resume=str(interrupted), max_steps=6, max_minutes=None, device="cpu", sample_seconds=0.0)
    )
    assert resumed == interrupted
    a, b = records(straight, "train"), records(resumed, "train")
    assert sorted(b) == list(range(1, 7))
    assert [(a[s]["loss"], a[s]["lr"]) for s in range(1, 7)] == [
        (b[s]["loss"], b[s]["lr"]) for s in range(1, 7)
    ]  # exactly
    # the premises: dropout is on, and the schedule fired (lr x factor) at the step-4 validation
    assert json.loads((straight / "config.json").read_text())["model"]["dropout"] == 0.1
    factor = OptimizerConfig.from_specs().plateau_factor
    assert [a[s]["lr"] for s in (4, 5)] == [0.03, 0.03 * factor]
    va, vb = records(straight, "validation"), records(resumed, "validation")
    assert [va[s]["loss"] for s in (2, 4, 6)] == [vb[s]["loss"] for s in (2, 4, 6)]
    pa, pb = checkpoint.load(straight / "checkpoint.pt"), checkpoint.load(resumed / "checkpoint.pt")
    for key in ("model", "optimizer", "scheduler", "rng", "step", "best_val"):
        assert_same_state(pa[key], pb[key], key)
    assert pb["scheduler"]["_last_lr"][0] == 0.03 * factor**2 and pb["step"] == 6


def test_dropout_flag_reaches_the_model(tmp_path, capsys):
    config = train_cmd.parse_args(["--dropout", "0.25"]).resolved()
    model = loop.Run(config, tmp_path, torch.device("cpu")).model
    rates = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout) or type(m).__name__ == "ChannelDropout"}
    assert model.config.dropout == 0.25 and rates == {0.25}
    assert train_cmd.parse_args([]).resolved().model_config().dropout == 0.0  # the tiny preset's
    code, err = run_main(train_cmd, ["--dropout", "1.5", "--out", str(tmp_path / "runs"), "--max-steps", "1"], capsys)
    assert_one_line_error(code, err, "--dropout", "1.5")


# --- what the schedule watches ----------------------------------------------------------------


def plateau_lrs(losses_seen) -> list[float]:
    """The learning rates of both parameter groups after feeding `losses_seen` to a fresh schedule."""
    optimizer, scheduler = make_optimizer(SashimiLM(tiny_config(8)), 0.004)
    lrs = []
    for value in losses_seen:
        scheduler.step(value)
        lrs.append([g["lr"] for g in optimizer.param_groups])
    return lrs


def test_plateau_keeps_the_lr_while_the_loss_improves():
    spec = OptimizerConfig.from_specs()
    lrs = plateau_lrs([10.0 - 0.1 * i for i in range(3 * spec.plateau_patience)])
    assert all(lr == [0.004, spec.ssm_lr] for lr in lrs)


def test_plateau_drops_the_lr_by_its_factor_on_the_validation_after_patience_bad_ones():
    """ReduceLROnPlateau's rule: `patience` non-improving losses are tolerated; the next one
    multiplies every group's lr by the factor, and the count starts over."""
    spec = OptimizerConfig.from_specs()
    p = spec.plateau_patience
    lrs = plateau_lrs([5.0] + [5.0 + 0.01 * i for i in range(1, 2 * p + 3)])
    base = [0.004, spec.ssm_lr]
    assert all(lr == base for lr in lrs[: p + 1])  # the first loss and `patience` bad ones
    once = [x * spec.plateau_factor for x in base]
    assert lrs[p + 1] == pytest.approx(once, rel=1e-15)
    assert all(lr == lrs[p + 1] for lr in lrs[p + 1 : 2 * p + 2])
    assert lrs[2 * p + 2] == pytest.approx([x * spec.plateau_factor for x in once], rel=1e-15)


def test_the_loop_schedules_on_the_validation_loss(audio_folder, tmp_path, monkeypatch):
    """fit feeds the validation loss (not the accuracy) to the schedule: chosen validation results,
    loss rising while the accuracy (in min mode: improving) falls, fire it after patience 1 + 1 bad ones."""
    monkeypatch.setattr(OptimizerConfig, "from_specs", spec_with_patience(1))
    chosen = iter([(5.0, 0.9), (5.5, 0.8), (6.0, 0.7), (6.5, 0.6), (7.0, 0.5)])

    def fake_evaluate(*args, **kwargs):
        loss, accuracy = next(chosen)
        return {"loss": loss, "bits_per_sample": loss, "accuracy": accuracy}

    monkeypatch.setattr(loop, "evaluate", fake_evaluate)
    run_dir = loop.train(
        train_config(audio_folder, tmp_path, max_steps=5, seq_len=64, batch_size=2, eval_every=1, lr=0.01)
    )
    lrs = {s: r["lr"] for s, r in records(run_dir, "train").items()}
    factor = OptimizerConfig.from_specs().plateau_factor
    # validations after steps 1 (best), 2 and 3 (bad: the 2nd exceeds patience 1) -> step 4 trains at lr x factor
    assert [lrs[s] for s in range(1, 6)] == [0.01, 0.01, 0.01, 0.01 * factor, 0.01 * factor]


@pytest.mark.nightly  # a run of its own (3 s); the sample writer's lengths are tested in tests/sampling
def test_the_closing_sample_has_the_nearest_whole_number_of_samples(audio_folder, tmp_path):
    """sample_seconds x sample_rate rounded to the nearest sample, as generate's --seconds: 0.2500475 s
    at 16 kHz is 4000.76 samples, so 4001 (truncation gives 4000); counted from the WAV written."""
    run_dir = loop.train(train_config(audio_folder, tmp_path, max_steps=1, eval_every=1, sample_seconds=0.2500475))
    rate = json.loads((run_dir / "config.json").read_text())["train"]["sample_rate"]
    want = round(Fraction("0.2500475") * rate)
    (wav,) = (run_dir / "samples").glob("*.wav")
    assert soundfile.info(str(wav)).frames == want == 4001 and rate == 16000


def test_the_checkpoint_keeps_the_lowest_validation_loss(trained):
    """best_val in the checkpoint is the lowest validation loss metrics.jsonl records."""
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "validation"]
    assert losses and checkpoint.load(trained / "checkpoint.pt")["best_val"] == min(losses)

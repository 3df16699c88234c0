"""The memory check before a training step or an evaluation: the estimate grows with every input
(the batch size too), a batch over the limit is refused naming it and the flag to lower, and each
process checks its own share of the global batch, an evaluation its own batch."""

import pytest
import torch

from sashimi.core.config import model_config
from sashimi.io import checkpoint
from sashimi.model.lm import SashimiLM
from sashimi.training import evaluation, loop, memory
from tests.helpers import train_config

SEQ_LEN = 256


def logit_bytes(batch: int, n_classes: int, per_position: int) -> int:
    """A lower bound of any honest estimate, counted apart from sashimi.training.memory: 8-bit
    training holds `per_position` float32 values per class at each position (logits, log-softmax,
    gradient: 3; an evaluation's logits: 1)."""
    return batch * SEQ_LEN * per_position * n_classes * 4


@pytest.mark.parametrize("training, per_position", [(True, 3), (False, 1)], ids=["training", "evaluation"])
def test_doubling_the_batch_adds_at_least_the_logits_of_every_added_clip(training, per_position):
    config = model_config("tiny", 8)
    sizes = {b: memory.estimate_bytes(config, b, SEQ_LEN, training) for b in (1, 2, 4, 8)}
    for b in (1, 2, 4):
        added = sizes[2 * b] - sizes[b]
        assert added >= logit_bytes(b, config.n_classes, per_position), (b, sizes)
    # activations are per clip: the estimate is affine in the batch size
    assert sizes[8] - sizes[4] == pytest.approx(2 * (sizes[4] - sizes[2]), abs=4), sizes
    assert sizes[4] - sizes[2] == pytest.approx(2 * (sizes[2] - sizes[1]), abs=4), sizes


def test_evaluation_needs_less_than_training():
    """No gradients, no AdamW moments, no kept block inputs: an evaluation batch needs less than a training step's."""
    config = model_config("tiny", 8)
    for batch in (1, 8):
        assert memory.estimate_bytes(config, batch, SEQ_LEN, False) < memory.estimate_bytes(config, batch, SEQ_LEN)


def test_a_batch_over_the_limit_is_refused_naming_it_and_the_flag(monkeypatch):
    """The limit is the logits alone of 64 clips: a batch of 64 cannot fit, one clip (weights and
    all) can."""
    config = model_config("tiny", 8)
    monkeypatch.setenv("SASHIMI_MEMORY_LIMIT", str(logit_bytes(64, config.n_classes, 3)))
    cpu = torch.device("cpu")
    assert memory.check_fits(config, 1, SEQ_LEN, cpu, "a training step", "--batch-size") > 0
    with pytest.raises(MemoryError) as refused:
        memory.check_fits(config, 64, SEQ_LEN, cpu, "a training step", "--batch-size")
    message = str(refused.value)
    assert f"a training step (64 x {SEQ_LEN} samples) needs about" in message, message
    assert "available on cpu: lower --batch-size" in message and "\n" not in message, message


class Joined(Exception):
    """Raised instead of joining a process group: the memory check let the process through."""


def test_each_process_checks_its_own_share_of_the_batch(tmp_path, monkeypatch):
    """Under torchrun (2 processes) a global batch of 8 is 4 clips a process: a limit that fits 4
    clips lets the process go on to join the group, while one process alone with 8 is refused."""
    config = model_config("tiny", 8)
    monkeypatch.setenv("SASHIMI_MEMORY_LIMIT", str(memory.estimate_bytes(config, 4, SEQ_LEN)))

    def join(device, procs):
        raise Joined(procs)

    monkeypatch.setattr(loop, "start_processes", join)
    run = train_config(tmp_path / "data", tmp_path / "runs", batch_size=8, seq_len=SEQ_LEN)  # checked before any data
    with pytest.raises(MemoryError, match=f"a training step \\(8 x {SEQ_LEN} samples\\)"):
        loop.train(run)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(Joined):
        loop.train(run)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_an_evaluation_checks_its_own_batch_before_reading_the_folder(tmp_path, monkeypatch):
    config = model_config("tiny", 8)
    train = {"seq_len": SEQ_LEN, "quantization": "mulaw", "sample_rate": 16000}
    path = checkpoint.save(
        {"config": {"model": config.to_dict(), "train": train}, "model": SashimiLM(config).state_dict()},
        tmp_path / "ck.pt",
    )
    monkeypatch.setenv("SASHIMI_MEMORY_LIMIT", str(logit_bytes(4096, config.n_classes, 1)))
    with pytest.raises(MemoryError) as refused:
        evaluation.evaluate_folder(path, tmp_path / "no such folder", batch_size=4096)
    message = str(refused.value)
    assert f"evaluation (4096 x {SEQ_LEN} samples) needs about" in message and "lower --batch-size" in message, message

"""Evaluation of a checkpoint on a folder: equal to NumPy over the same clips and to training's
validation metrics; JSON output."""

import json
import math
import shutil
import time

import numpy as np
import pytest
import torch

from sashimi import evaluate as evaluate_cmd
from sashimi.audio import dataset as data
from sashimi.audio.dataset import IGNORE_INDEX
from sashimi.harness.verdict import assert_close
from sashimi.io.checkpoint import load_model
from sashimi.training import evaluation


def numpy_metrics(logits: np.ndarray, targets: np.ndarray, bits: int) -> dict:
    """The metrics written out in float64 NumPy: mean NLL over non-padding positions of the
    log-softmax, its bits, bpb, perplexity, and top-k hits (the target's rank: how many logits beat it)."""
    keep = targets != IGNORE_INDEX
    z, y = logits[keep].astype(np.float64), targets[keep]
    z = z - z.max(-1, keepdims=True)
    nll = np.log(np.exp(z).sum(-1)) - z[np.arange(len(y)), y]
    rank = (z > z[np.arange(len(y)), y][:, None]).sum(-1)
    loss = nll.mean()
    out = {
        "loss": loss,
        "bits_per_sample": loss / np.log(2),
        "bpb": loss / np.log(2) / (bits / 8),
        "perplexity": np.exp(loss),
        "positions": len(y),
    }
    out.update({"accuracy": (rank < 1).mean(), **{f"accuracy@{k}": (rank < k).mean() for k in (3, 5, 10)}})
    return out


@pytest.fixture(scope="module")
def few_files(audio_folder, tmp_path_factory):
    """5 of the synthetic folder's files (about 80 clips): evaluation's sums over files and batches,
    in a fraction of the whole folder's time."""
    folder = tmp_path_factory.mktemp("few")
    for f in sorted(audio_folder.rglob("*.wav"))[:5]:
        shutil.copy(f, folder / f.name)
    return folder


@pytest.mark.first
def test_evaluate_matches_numpy_over_the_same_clips(trained, few_files, capsys):
    """evaluate_folder against an independent computation: the checkpoint's logits on every clip of
    the folder, reduced by numpy_metrics (no code of sashimi.training.metrics), and the unigram
    entropy of the folder's tokens from np.bincount. Beside them: files (the folder's audio files),
    clips, seconds (within the call's own time) and the bar (asked for) over ceil(clips / 3) batches."""
    model, _ = load_model(trained / "checkpoint.pt")
    dataset = data.AudioDataset(few_files, None, 256, 8, "mulaw")
    x, y = (torch.stack(t) for t in zip(*(dataset[i] for i in range(len(dataset)))))
    with torch.no_grad():
        logits = model(x).numpy()
    want = numpy_metrics(logits, y.numpy(), 8)
    capsys.readouterr()
    before = time.perf_counter()
    got = evaluation.evaluate_folder(str(trained / "checkpoint.pt"), str(few_files), batch_size=3, progress=True)
    took = time.perf_counter() - before
    assert got["files"] == len(list(few_files.rglob("*.wav"))) > 0 and got["clips"] == len(dataset)
    assert 0 < got["seconds"] <= took
    assert f" 0/{math.ceil(len(dataset) / 3)} " in capsys.readouterr().err
    assert got["positions"] == want["positions"] > 256
    for key in ("loss", "bits_per_sample", "bpb", "perplexity"):
        assert_close(got[key], want[key], "metrics_float32_logits")
    for key in ("accuracy", "accuracy@3", "accuracy@5", "accuracy@10"):
        assert got[key] == want[key], (key, got[key], want[key])
    counts = np.bincount(np.concatenate(dataset.tokens).astype(np.int64), minlength=256) / sum(
        len(t) for t in dataset.tokens
    )
    assert got["unigram_bits_per_sample"] == pytest.approx(
        -(counts[counts > 0] * np.log2(counts[counts > 0])).sum(), rel=1e-12
    )


def test_evaluate_matches_training_metrics(trained, tmp_path):
    """The last validation record of training equals evaluate on the validation files."""
    cfg = json.loads((trained / "config.json").read_text())
    validation = data.AudioDataset(cfg["data_folder"], "validation", 256, 8, "mulaw")
    folder = tmp_path / "validation"
    folder.mkdir()
    for f in validation.files:
        shutil.copy(f, folder / f.name)
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if r["kind"] == "validation"][-1]
    result = evaluation.evaluate_folder(str(trained / "checkpoint.pt"), str(folder), batch_size=4)
    for key in ("loss", "bits_per_sample", "bpb", "accuracy", "accuracy@3", "accuracy@5", "accuracy@10", "perplexity"):
        assert_close(result[key], last[key], "evaluate_vs_training_metrics")
    assert result["positions"] == last["positions"]
    assert result["bits_per_sample"] == pytest.approx(result["loss"] / np.log(2))
    assert 0 < result["unigram_bits_per_sample"] <= 8


def test_evaluate_json(trained, few_files, tmp_path, capsys):
    assert evaluate_cmd.main(["--checkpoint", str(trained / "checkpoint.pt"), "--data", str(few_files), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {
        "loss",
        "bits_per_sample",
        "bpb",
        "accuracy",
        "accuracy@3",
        "accuracy@5",
        "accuracy@10",
        "perplexity",
    } <= set(out)


@pytest.mark.first
def test_evaluation_is_checked_against_the_inference_estimate_quietly_with_the_commands_batch(
    trained, few_files, monkeypatch, capsys
):
    """Evaluation keeps no gradients or optimizer state: a memory limit between the inference and the
    training estimates of its batch lets it run, one under the inference estimate refuses it. Called
    as a library it draws no bar (the command asks for one), with the command's --batch-size."""
    import inspect

    from sashimi.training import memory

    model, payload = load_model(trained / "checkpoint.pt")
    seq_len = payload["config"]["train"]["seq_len"]
    inference, training = (memory.estimate_bytes(model.config, 3, seq_len, training=t) for t in (False, True))
    assert inference < training
    monkeypatch.setenv("SASHIMI_MEMORY_LIMIT", str((inference + training) // 2))
    capsys.readouterr()
    evaluation.evaluate_folder(str(trained / "checkpoint.pt"), str(few_files), batch_size=3)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("SASHIMI_MEMORY_LIMIT", str(inference - 1))
    with pytest.raises(MemoryError, match=r"evaluation \(3 x"):
        evaluation.evaluate_folder(str(trained / "checkpoint.pt"), str(few_files), batch_size=3)
    default = inspect.signature(evaluation.evaluate_folder).parameters["batch_size"].default
    assert default == evaluate_cmd.make_parser().parse_args(["--checkpoint", "c", "--data", "d"]).batch_size

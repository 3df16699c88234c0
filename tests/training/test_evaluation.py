"""Evaluation of a checkpoint on a folder: equal to training's validation metrics; JSON output."""

import json
import shutil

import numpy as np
import pytest

from sashimi import evaluate as evaluate_cmd
from sashimi.audio import dataset as data
from sashimi.harness.verdict import assert_close
from sashimi.training import evaluation


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


def test_evaluate_json(trained, tmp_path, capsys):
    cfg = json.loads((trained / "config.json").read_text())
    assert evaluate_cmd.main(["--checkpoint", str(trained / "checkpoint.pt"), "--data", cfg["data_folder"], "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"loss", "bits_per_sample", "bpb", "accuracy", "accuracy@3", "accuracy@5", "accuracy@10", "perplexity"} <= set(out)

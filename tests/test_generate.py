"""Generation and evaluation from a trained checkpoint, and their bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sashimi import checkpoint, data, evaluate, generate, train
from sashimi.spec import assert_close
from tests.test_train import assert_one_line_error, config, run_main


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    folder = root / "audio"
    data.write_synthetic_dataset(folder, n_clips=36, seconds=0.25)
    return train.train(config(folder, root / "runs", max_steps=6, eval_every=6, eval_batches=100))


def test_generate_writes_wavs_of_the_requested_length(trained, tmp_path, capsys):
    out = tmp_path / "samples"
    code = generate.main(["--checkpoint", str(trained / "checkpoint.pt"), "--n-samples", "3", "--length", "300", "--batch-size", "2",
                          "--out", str(out), "--top-p", "0.95"])
    assert code == 0
    wavs = sorted(out.glob("*.wav"))
    assert len(wavs) == 3 and len(list(out.glob("*.png"))) == 3
    for wav in wavs:
        audio, rate = sf.read(wav)
        assert rate == 16000 and audio.shape == (300,) and np.all(np.abs(audio) <= 1.0)
    scores = [float(w.stem.split("_loglik_")[1]) for w in wavs]
    assert scores == sorted(scores, reverse=True)  # sorted by log-likelihood, best first
    assert "samples/s" in capsys.readouterr().out


def test_generate_with_a_prefix(trained, tmp_path):
    prefix = tmp_path / "prefix.wav"
    sf.write(prefix, np.sin(np.arange(40) / 3.0).astype(np.float32), 16000)
    out = tmp_path / "primed"
    assert generate.main(["--checkpoint", str(trained / "checkpoint.pt"), "--n-samples", "1", "--length", "20", "--prefix", str(prefix), "--out", str(out)]) == 0
    audio, _ = sf.read(next(out.glob("*.wav")))
    assert audio.shape == (60,)


def test_sampling_is_seeded_and_respects_top_p(trained):
    model, _ = generate.load_model(trained / "checkpoint.pt")
    a, _ = generate.sample(model, 2, 40, seed=3)
    b, _ = generate.sample(model, 2, 40, seed=3)
    assert torch.equal(a, b)
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])  # probabilities 0.032, 0.087, 0.237, 0.644
    assert torch.isfinite(generate.top_p_filter(logits, 0.5)).tolist() == [[False, False, False, True]]
    assert torch.isfinite(generate.top_p_filter(logits, 0.7)).tolist() == [[False, False, True, True]]
    assert torch.isfinite(generate.top_p_filter(logits, 1.0)).all()


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
    result = evaluate.evaluate_folder(str(trained / "checkpoint.pt"), str(folder), batch_size=4)
    for key in ("loss", "bits_per_sample", "bpb", "accuracy", "accuracy@3", "accuracy@5", "accuracy@10", "perplexity"):
        assert_close(result[key], last[key], "evaluate_vs_training_metrics")
    assert result["positions"] == last["positions"]
    assert result["bits_per_sample"] == pytest.approx(result["loss"] / np.log(2))
    assert 0 < result["unigram_bits_per_sample"] <= 8


def test_evaluate_json(trained, tmp_path, capsys):
    cfg = json.loads((trained / "config.json").read_text())
    assert evaluate.main(["--checkpoint", str(trained / "checkpoint.pt"), "--data", cfg["data_folder"], "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"loss", "bits_per_sample", "bpb", "accuracy", "accuracy@3", "accuracy@5", "accuracy@10", "perplexity"} <= set(out)


def test_truncated_checkpoint(trained, tmp_path, capsys):
    broken = tmp_path / "truncated.pt"
    raw = (trained / "checkpoint.pt").read_bytes()
    broken.write_bytes(raw[: len(raw) // 2])
    code, err = run_main(generate, ["--checkpoint", str(broken), "--length", "10", "--out", str(tmp_path / "s")], capsys)
    assert_one_line_error(code, err, "truncated")
    code, err = run_main(evaluate, ["--checkpoint", str(broken), "--data", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "truncated")


def test_checkpoint_of_another_configuration(trained, tmp_path, capsys):
    payload = checkpoint.load(trained / "checkpoint.pt")
    payload["config"]["model"]["bits"] = 16  # weights are 8-bit
    other = checkpoint.save(payload, tmp_path / "other.pt")
    code, err = run_main(generate, ["--checkpoint", str(other), "--length", "10", "--out", str(tmp_path / "s")], capsys)
    assert_one_line_error(code, err, "do not fit", "16-bit")
    code, err = run_main(generate, ["--checkpoint", str(trained / "checkpoint.pt"), "--bits", "16", "--length", "10"], capsys)
    assert_one_line_error(code, err, "8-bit model", "--bits 16")

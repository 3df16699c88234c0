"""Every command that can run for more than a few seconds says what it is doing on stderr while it
does it (`evaluate`, `check`, `specs`), leaving stdout to the results."""

import torch

from sashimi import evaluate, specs
from sashimi.harness import gate
from sashimi.io import checkpoint
from tests.helpers import lm, run_main, tiny_config


def test_evaluate_says_it_reads_the_files_then_shows_a_bar(audio_folder, tmp_path, capsys):
    model = lm(2, torch.float32, **tiny_config(8).to_dict())
    path = checkpoint.save(
        {"model": model.state_dict(), "config": {"model": model.config.to_dict(), "train": {"seq_len": 64}}},
        tmp_path / "m.pt",
    )
    code, err = run_main(
        evaluate, ["--checkpoint", str(path), "--data", str(audio_folder), "--batch-size", "256", "--json"], capsys
    )
    assert code == 0, err
    assert err.startswith(f"reading the audio files under {audio_folder}\n"), err
    assert "evaluating:   0%" in err and "batch/s" in err, err  # a bar over the batches (cleared when done)


def test_check_names_each_family_as_it_starts(monkeypatch):
    seen = []
    for name in ("spec_rows", "identity_rows", "optimizer_rows", "reference_rows"):
        monkeypatch.setattr(gate, name, lambda name=name: seen.append(name) or [])
    monkeypatch.setattr(gate, "published_rows", lambda fixtures, allow=False: seen.append("published_rows") or [])
    monkeypatch.setattr(gate.golden, "golden_outputs", lambda errors: seen.append("golden_outputs") or {})
    monkeypatch.setattr(gate.golden, "golden_rows", lambda measured, expected, errors: [])
    monkeypatch.setattr(gate.golden, "read", lambda: {})
    gate.run(log=lambda stage: seen.append(stage))
    assert seen == [
        "[1/5] specs",
        "spec_rows",
        "optimizer_rows",
        "[2/5] golden",
        "golden_outputs",
        "[3/5] identity",
        "identity_rows",
        "[4/5] reference",
        "reference_rows",
        "[5/5] published",
        "published_rows",
    ]
    seen.clear()
    gate.run(only=["identity", "published"], log=lambda stage: seen.append(stage))
    assert seen == ["[1/2] identity", "identity_rows", "[2/2] published", "published_rows"]


def test_specs_names_each_part_on_stderr(capsys):
    code, err = run_main(specs, ["--preset", "tiny", "--json"], capsys)
    assert code == 0
    assert err.splitlines() == [
        "specs [1/3] shapes of the tiny 8-bit model",
        "specs [2/3] parameter counts of every preset",
        "specs [3/3] the design note's claims",
    ]

"""python -m sashimi.specs: live tables, exact specs, JSON output, exit status."""

import json

import pytest

import specs
from sashimi import specs as specs_cmd
from sashimi.core import config


def test_json_has_the_exact_counts(capsys):
    assert specs_cmd.main(["--json", "--bits", "16"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"]["total"] == 13185280
    assert out["params"]["backbone"] == 4731136
    assert out["params"]["encoder"] == 4194304 and out["params"]["decoder"] == 4259840
    assert out["ok"] is True


def test_tables_and_verdicts_are_printed(capsys):
    assert specs_cmd.main([]) == 0
    out = capsys.readouterr().out
    assert "Tensor shape summary" in out and "Parameter count breakdown" in out
    assert "4,764,160" in out
    assert "[note] claim     ~128KB of logits per sample" in out  # the note's claim, reported
    assert "[pass] claim     ~4M parameters" in out


@pytest.mark.parametrize("preset", config.preset_names())
def test_every_preset_meets_the_shape_specs(preset, capsys):
    assert specs_cmd.main(["--preset", preset, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert all(s["passed"] for s in out["specs"] if s["group"] == "shape")


def test_a_wrong_count_fails_the_command(monkeypatch, capsys):
    """A spec that does not hold makes the exit status non-zero and is named."""
    real = specs.load

    def tampered(name):
        data = real(name)
        if name == "params":
            data = json.loads(json.dumps(data))
            data["exact"][0]["total"] += 1
        return data

    monkeypatch.setattr(specs, "load", tampered)
    assert specs_cmd.main([]) == 1
    assert "[FAIL] params    paper model, 8-bit (n_ssm = 1): total" in capsys.readouterr().out


def test_unknown_preset_is_refused():
    with pytest.raises(SystemExit):
        specs_cmd.main(["--preset", "nope"])
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        config.model_config("nope", 8)

"""python -m sashimi.specs: live tables, exact specs, JSON output, exit status."""

import json
import math

import pytest

import specs
from sashimi import specs as specs_cmd
from sashimi.core import config
from sashimi.harness import contract
from sashimi.model.lm import SashimiLM


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
    rows = [s for s in out["specs"] if s["group"] == "shape"]
    shapes = specs.load("shapes")
    B, L = 2, 4 * math.prod(config.model_config(preset, 8).pool)
    names = [f"{s['stage']} (B={B}, L={L})" for s in shapes["stages"]]
    names += [f"decoder l_output={m['l_output']}" for m in shapes["decoder_modes"]]
    assert [s["name"] for s in rows] == names  # one row for each stage and decoder mode of the spec
    wanted = ["(" + ", ".join(s["shape"]) + ")" for s in [*shapes["stages"], *shapes["decoder_modes"]]]
    assert [s["expected"] for s in rows] == wanted
    assert all(s["passed"] for s in rows)


def test_every_exact_count_has_its_row_and_the_breakdown_is_the_paper_models(capsys):
    assert specs_cmd.main(["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = [s["name"] for s in out["specs"] if s["group"] == "params"]
    for e in specs.load("params")["exact"]:
        parts = [p for p in ("backbone", "encoder", "decoder", "total") if p in e]
        assert {f"{e['name']}: {p}" for p in parts} <= set(names)
        if "published_total" in e:
            assert f"{e['name']}: published count (+ weight_g of the pool linears)" in names
    breakdown = {s["name"]: s["measured"] for s in out["specs"] if s["name"].startswith("paper model breakdown")}
    paper = contract.categories(SashimiLM(config.model_config("sc09", 8)))  # built here, not through the cache
    assert breakdown == {f"paper model breakdown: {k} (rounded to 0.01M)": str(v) for k, v in paper.items()}


def test_a_claim_whose_verdict_differs_from_the_note_says_so(monkeypatch):
    real = specs.load

    def flipped(name):
        data = json.loads(json.dumps(real(name)))
        if name == "claims":
            data["claims"][0]["expected_verdict"] = not data["claims"][0]["expected_verdict"]
        return data

    monkeypatch.setattr(specs, "load", flipped)
    lines = contract.claim_lines()
    differs = ' [verdict differs from docs/DESIGN.md, "The design note\'s claims"]'
    assert lines[0].comment.endswith(differs) and not any(line.comment.endswith(differs) for line in lines[1:])


def test_the_recipe_rows_are_introduced_only_where_there_are_some(capsys):
    report = contract.report("sc09", 8)
    assert report["recipe"]
    contract.print_report(report)
    assert "(then the training recipe: preset sc09" in capsys.readouterr().out
    contract.print_report({**report, "recipe": []})
    assert "(then the training recipe" not in capsys.readouterr().out


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

"""The training recipe beside the official one (`python -m sashimi.specs`): every setting of the
official sashimi experiments has a row; an unexplained difference and a stale reason both fail."""

import copy

import pytest
import torch

import specs
from sashimi.harness import recipe


@pytest.mark.parametrize("name", ["sc09", "youtubemix", "beethoven"])
def test_every_official_setting_has_a_passing_row(name):
    rows = {r.name: r for r in recipe.recipe_lines(name)}
    assert all(r.passed for r in rows.values()), [r.line() for r in rows.values() if not r.passed]
    assert {
        f"{name} {k}" for k in ("lr", "batch_size", "grad_clip", "plateau_patience", "ssm_lr", "seq_len", "betas")
    } <= set(rows)
    assert rows[f"{name} ssm_lr"].measured == "ours 0.001" and rows[f"{name} ssm_lr"].expected.startswith(
        "official 0.001 (configs/experiment/audio/"
    )


def test_sc09_lr_differs_on_purpose_and_its_reason_is_shown():
    row = next(r for r in recipe.recipe_lines("sc09") if r.name == "sc09 lr")
    assert (row.measured, row.expected.split(" (")[0]) == ("ours 0.004", "official 0.001") and row.comment.startswith(
        "kept on purpose"
    )


def edited(monkeypatch, change):
    data = {n: copy.deepcopy(specs.load(n)) for n in ("recipes", "official_recipes")}
    change(data)
    load = specs.load
    monkeypatch.setattr(recipe.specs, "load", lambda n: data[n] if n in data else load(n))


def test_an_unexplained_difference_fails(monkeypatch):
    edited(monkeypatch, lambda d: d["official_recipes"]["youtubemix"]["optimizer"].update(lr=0.002))
    failed = [r for r in recipe.recipe_lines("youtubemix") if not r.passed]
    assert [r.name for r in failed] == ["youtubemix lr"] and failed[0].comment.startswith("unexplained difference")


def test_a_reason_for_agreeing_values_fails(monkeypatch):
    edited(monkeypatch, lambda d: d["official_recipes"]["sc09"]["optimizer"].update(lr=0.004))
    failed = [r for r in recipe.recipe_lines("sc09") if not r.passed]
    assert [r.name for r in failed] == ["sc09 lr"] and "values agree" in failed[0].comment


def test_an_official_recipe_without_betas_takes_adamws_and_either_grouping_flag_decays(monkeypatch):
    def edit(d):
        d["official_recipes"]["sc09"]["optimizer"].pop("betas", None)
        grouping = d["official_recipes"]["sc09"]["train"]["optimizer_param_grouping"]
        grouping.update(bias_weight_decay=True, normalization_weight_decay=False)

    edited(monkeypatch, edit)
    adamw = torch.optim.AdamW([torch.zeros(1, requires_grad=True)]).defaults["betas"]
    assert recipe.official("sc09")["betas"] == list(adamw)
    assert recipe.official("sc09")["bias_and_norm_weight_decay"] is True


def test_a_preset_without_an_official_recipe_has_no_rows_and_a_stale_reason_fails(monkeypatch):
    assert recipe.recipe_lines("tiny") == []
    edited(monkeypatch, lambda d: d["recipes"]["presets"]["sc09"].setdefault("differences", {}).update(nope="gone"))
    [stale] = [r for r in recipe.recipe_lines("sc09") if r.name == "sc09 nope"]
    assert (stale.passed, stale.comment) == (False, "stale reason in specs/recipes.json")

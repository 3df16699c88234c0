"""The training fixtures of the official pipeline (tests/published/training_*.npz): our loss,
gradients, optimizer groups and steps pass every row, and a fixture with one gradient off by
1e-6 relative fails exactly the row naming that parameter."""

import copy
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

import specs
from sashimi.core.config import OptimizerConfig
from sashimi.harness import published
from sashimi.harness.published_training import RECORDS, PipelineParameters, check_training, group_rows
from sashimi.io import pipeline
from sashimi.io.interop import InteropError
from tests.helpers import PUBLISHED

PARAMETER = "model.u_layers.1.1.layer.layer.kernel.B"  # an SSM parameter, in its own optimizer group


def rows(path) -> dict:
    return {r.name.split(": ", 1)[1]: r for r in published.check(path)}


@pytest.mark.slow  # the whole training check of a fixture
def test_v3_fixture_passes_every_row():
    results = rows(PUBLISHED / "training_v3.0.0.npz")
    assert all(r.passed for r in results.values()), [r.line() for r in results.values() if not r.passed]
    state = [
        k
        for k in np.load(PUBLISHED / "training_v3.0.0.npz").files
        if not k.startswith(RECORDS) and not k.endswith(".L")
    ]
    assert {f"gradient {k}" for k in state} <= set(results) and {f"parameter after 3 steps {k}" for k in state} <= set(
        results
    )
    assert {
        "loss (float64)",
        "param groups (experiment: lr 0.001, weight decay 0.0)",
        "param groups (probe: lr 0.004, weight decay 0.1)",
    } <= set(results)
    own = results["3 steps of sashimi.train's own step (pool weights as the pipeline's g, v)"]
    assert own.measured.startswith(f"{len(state)} of {len(state)} parameters within")
    assert 0 < own.error <= own.bound  # the worst parameter's, as measured


@pytest.mark.slow  # the whole training check of a fixture
def test_one_gradient_off_by_a_millionth_fails_its_row(tmp_path):
    source = PUBLISHED / "training_v4.npz"
    with np.load(source) as f:
        arrays = {k: f[k] for k in f.files}
    arrays[f"grad/{PARAMETER}"] = arrays[f"grad/{PARAMETER}"] * (1 + 1e-6)
    np.savez(tmp_path / "training_v4.npz", **arrays)
    shutil.copy(source.with_suffix(".json"), tmp_path / "training_v4.json")
    results = rows(tmp_path / "training_v4.npz")
    failed = [name for name, r in results.items() if not r.passed]
    assert failed == [f"gradient {PARAMETER}"], failed
    assert len(results) == 242 and "loss (float64)" in results


@pytest.mark.slow  # the whole training check of a fixture
def test_group_rows_name_an_unexplained_difference(tmp_path):
    """The pipeline's groups rewritten so that one decayed parameter sits without weight decay:
    the probe's group row fails and names it."""
    source = PUBLISHED / "training_v4.npz"
    shutil.copy(source, tmp_path / source.name)
    meta = json.loads(source.with_suffix(".json").read_text())
    decayed = next(g for g in meta["probe_param_groups"] if g["weight_decay"] > 0)
    undecayed = next(g for g in meta["probe_param_groups"] if g["weight_decay"] == 0 and g["lr"] == decayed["lr"])
    moved = decayed["names"].pop(decayed["names"].index("encoder.0.weight"))
    undecayed["names"].append(moved)
    (tmp_path / "training_v4.json").write_text(json.dumps(meta))
    results = rows(tmp_path / source.name)
    failed = [name for name, r in results.items() if not r.passed]
    assert failed == ["param groups (probe: lr 0.004, weight decay 0.1)"], failed
    assert "encoder.0.weight" in results[failed[0]].comment


def test_a_known_difference_that_no_longer_differs_fails_the_group_row():
    """specs/recipes.json explains why v3.0.0's probe decays model.norm.* and ours does not. The
    pipeline's groups rewritten with model.norm.* undecayed (as ours): the reason is stale, and the
    row fails naming it; as recorded, the row passes."""
    path = PUBLISHED / "training_v3.0.0.npz"
    meta = json.loads(path.with_suffix(".json").read_text())
    with np.load(path) as f:
        state = {k: torch.from_numpy(f[k]) for k in f.files if not k.startswith(RECORDS)}
    model = PipelineParameters(state, pipeline.detect_layout(state), meta.get("dt_transform"))
    spec = dataclasses.replace(OptimizerConfig.from_specs(), weight_decay=0.1)
    known = specs.load("recipes")["param_groups"]["v3.0.0"]["probe"]
    assert set(known) == {"model.norm.weight", "model.norm.bias"}

    def row(groups):
        return group_rows("v3", model, groups, "probe", 0.004, spec, known)

    assert row(meta["probe_param_groups"]).passed
    fixed = copy.deepcopy(meta["probe_param_groups"])
    decayed = next(g for g in fixed if g["weight_decay"] == 0.1)
    plain = next(g for g in fixed if g["weight_decay"] == 0.0 and g["lr"] == 0.004)
    for name in known:
        plain["names"].append(decayed["names"].pop(decayed["names"].index(name)))
    stale = row(fixed)
    assert not stale.passed and "model.norm.weight no longer differs" in stale.comment, stale.line()
    assert stale.measured == f"0 of {len(model.names)} differ"


def test_group_rows_name_the_first_four_unexplained_differences():
    """Five decayed parameters moved to the pipeline's undecayed group: the row fails, its comment
    names the first four (in name order), not the fifth."""
    path = PUBLISHED / "training_v3.0.0.npz"
    meta = json.loads(path.with_suffix(".json").read_text())
    with np.load(path) as f:
        state = {k: torch.from_numpy(f[k]) for k in f.files if not k.startswith(RECORDS)}
    model = PipelineParameters(state, pipeline.detect_layout(state), meta.get("dt_transform"))
    spec = dataclasses.replace(OptimizerConfig.from_specs(), weight_decay=0.1)
    known = specs.load("recipes")["param_groups"]["v3.0.0"]["probe"]
    groups = copy.deepcopy(meta["probe_param_groups"])
    decayed = next(g for g in groups if g["weight_decay"] == 0.1)
    plain = next(g for g in groups if g["weight_decay"] == 0.0 and g["lr"] == 0.004)
    moved = sorted(n for n in decayed["names"] if n not in known)[:5]
    for name in moved:
        plain["names"].append(decayed["names"].pop(decayed["names"].index(name)))
    row = group_rows("v3", model, groups, "probe", 0.004, spec, known)
    assert not row.passed and row.measured == f"{5 + len(known)} of {len(model.names)} differ"
    named = [n for n in moved if f"{n}: ours " in row.comment]
    assert named == moved[:4], row.comment


@pytest.mark.parametrize(
    "drop, where", [("train/loss_f64", "training fixture lacks"), ("steps", "training fixture's sidecar")]
)
def test_a_fixture_lacking_a_record_is_refused_naming_it(drop, where):
    path = PUBLISHED / "training_v4_clip.npz"
    meta = json.loads(path.with_suffix(".json").read_text())
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    (arrays if drop in arrays else meta).pop(drop)
    with pytest.raises(InteropError, match=f"{where}.*'{drop}'"):
        check_training(path, arrays, meta)


def test_each_pass_builds_from_the_fixture_not_from_an_earlier_pass():
    """A fresh pipeline state (l_kernel 0: C not yet C~) converts C and sets l_kernel at its first
    forward. The training check builds the gradient pass and the 3-step pass from one loaded
    fixture: the first pass's forward must leave the fixture, and so the second pass, as loaded."""
    arrays = np.load(PUBLISHED / "training_v4.npz")
    state = {k: torch.from_numpy(arrays[k]) for k in arrays.files if not k.startswith(RECORDS)}
    for k in state:
        if k.endswith("l_kernel"):
            state[k] = torch.zeros_like(state[k])
    pristine = copy.deepcopy(state)
    x, y = (torch.from_numpy(arrays[k]) for k in ("train/tokens", "train/targets"))
    layout, dt = pipeline.detect_layout(state), "softplus"
    first, second = PipelineParameters(state, layout, dt), PipelineParameters(state, layout, dt)
    first(x, y)
    assert all(torch.equal(state[k], pristine[k]) for k in state)
    assert all(int(v) == 0 for k, v in second.buffers_.items() if k.endswith("l_kernel"))
    alone = PipelineParameters(pristine, layout, dt)
    assert torch.equal(second(x, y)[0], alone(x, y)[0])


@pytest.mark.parametrize("stem", ["training_v4_fresh", "training_v4_clip"])
def test_official_training_fixtures_of_other_states_and_recipes_pass_every_row(stem):
    """`training_v4_fresh`: a new pipeline model's state (l_kernel 0, C not yet C~), which each pass
    must convert in its own copy; `training_v4_clip`: another shape, lr 0.002, weight decay 0.05 and
    gradient clipping at 0.5 (tools/README.md, "Other shapes")."""
    results = rows(PUBLISHED / f"{stem}.npz")
    assert all(r.passed for r in results.values()), [r.line() for r in results.values() if not r.passed]
    meta = json.loads((PUBLISHED / f"{stem}.json").read_text())
    with np.load(PUBLISHED / f"{stem}.npz") as f:
        grads, after = ([k for k in f.files if k.startswith(prefix)] for prefix in ("grad/", "step3/"))
    lr, wd = meta["optimizer"]["lr"], meta["optimizer"]["weight_decay"]
    probe = dict(o.split("=") for o in meta["probe_overrides"])
    own = "3 steps of sashimi.train's own step (pool weights as the pipeline's g, v)"
    assert set(results) == {
        "loss (float64)",
        f"param groups (experiment: lr {lr}, weight decay {wd})",
        f"param groups (probe: lr {probe['optimizer.lr']}, weight decay {probe['optimizer.weight_decay']})",
        own,
        *(f"gradient {k[len('grad/') :]}" for k in grads),
        *(f"parameter after 3 steps {k[len('step3/') :]}" for k in after),
    }
    assert 0 < results[own].error <= results[own].bound  # the worst parameter's error, as measured
    assert meta["fresh"] == (stem == "training_v4_fresh")
    assert stem != "training_v4_clip" or (meta["gradient_clip_val"], meta["optimizer"]["weight_decay"]) == (0.5, 0.05)

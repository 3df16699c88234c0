"""The training fixtures of the official pipeline (tests/published/training_*.npz): our loss,
gradients, optimizer groups and steps pass every row, and a fixture with one gradient off by
1e-6 relative fails exactly the row naming that parameter."""

import json
import shutil

import numpy as np
import pytest

from sashimi.harness import published
from sashimi.harness.published_training import RECORDS
from tests.helpers import PUBLISHED

pytestmark = pytest.mark.slow
PARAMETER = "model.u_layers.1.1.layer.layer.kernel.B"  # an SSM parameter, in its own optimizer group


def rows(path) -> dict:
    return {r.name.split(": ", 1)[1]: r for r in published.check(path)}


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
    assert len(results) == 241 and "loss (float64)" in results


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

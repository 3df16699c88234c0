"""Small parts of the gate checked on inputs made here: a golden row's shape mismatch, the
reference's float64 state, a float32 layer's condition, a training fixture without its sidecar."""

import json

import numpy as np
import pytest
import torch

from sashimi.harness.golden import golden_rows
from sashimi.harness.helpers import kernel_condition, numpy_state
from sashimi.harness.published import check, read_fixture
from sashimi.io.interop import InteropError
from sashimi.model.s4 import S4Layer


def test_a_golden_row_of_another_shape_names_the_shape_and_fails():
    [row] = golden_rows({"model8/x": np.zeros((2, 3))}, {"model8/x": np.zeros((3, 2))})
    assert (row.measured, row.passed) == ("shape (2, 3)", False)
    [same] = golden_rows({"model8/x": np.ones(3)}, {"model8/x": np.ones(3)})
    assert same.measured == "max diff 0.00e+00" and same.passed


def test_the_references_state_is_float64_and_a_float32_layer_takes_condition_one():
    layer = S4Layer(4)
    assert {v.dtype for v in numpy_state(layer).values() if np.issubdtype(v.dtype, np.floating)} == {
        np.dtype("float64")
    }
    assert kernel_condition(layer, 16) == 1.0
    assert kernel_condition(layer.to(torch.float64), 16) >= 1.0


def test_a_training_fixture_without_its_sidecar_is_refused(tmp_path):
    path = tmp_path / "train.pt"
    torch.save({"train/tokens": torch.zeros(2, dtype=torch.long)}, path)
    with pytest.raises(InteropError, match=r"sidecar .*train.json not found \(expected beside the training fixture\)"):
        read_fixture(path)


def test_a_standalone_fixture_refuses_another_delta_transform(tmp_path):
    path = tmp_path / "standalone.pt"
    torch.save({"x": torch.zeros(1)}, path)
    path.with_suffix(".json").write_text(json.dumps({"constructor_kwargs": {}, "batch": 1, "length": 4}))
    with pytest.raises(InteropError, match=r"--dt-transform softplus: the standalone model's Delta is exp\(inv_dt\)"):
        check(path, dt_transform="softplus")

"""Step mode: the O(N) recurrence against the dense real form (its oracle)."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sashimi.harness.verdict import assert_close
from tests import helpers
from tests.helpers import (
    DTYPES,
    l_kernel_for,
    l_kernel_modes,
    randn,
    rollout,
    seeds,
    ssm_sizes,
)


@given(ssm_sizes(max_L=32), seeds, l_kernel_modes, st.sampled_from(list(DTYPES)))
def test_linear_step_equals_dense_step(sizes, seed, mode, dtype):
    H, N2, n_ssm, L = sizes
    layer = helpers.s4_layer(H, N2, n_ssm, seed, DTYPES[dtype], l_kernel_for(mode, L))
    u = randn(seed, 2, L, H, dtype=DTYPES[dtype])
    with torch.no_grad():
        conv = layer(u)
        linear, dense = rollout(layer, u, mode="linear"), rollout(layer, u, mode="dense")
    assert_close(linear, conv, f"step_vs_conv_{dtype}")
    assert_close(dense, conv, f"step_vs_conv_{dtype}")


def test_unknown_step_mode_is_refused():
    layer = helpers.s4_layer(3, 4, 1, 0, torch.float64, 12)
    with pytest.raises(ValueError, match="'linear' or 'dense'"):
        layer.setup_step("diagonal")

"""Step mode: the O(N) recurrence against the dense real form (its oracle); both built in float64 and cast once."""

import copy

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sashimi.harness.helpers import kernel_condition
from sashimi.harness.verdict import assert_close
from sashimi.model.recurrence import linear_step_coefficients, step_matrices
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
    condition = kernel_condition(layer, L)
    assert_close(linear, conv, f"step_vs_conv_{dtype}", condition=condition)
    assert_close(dense, conv, f"step_vs_conv_{dtype}", condition=condition)


def test_unknown_step_mode_is_refused():
    layer = helpers.s4_layer(3, 4, 1, 0, torch.float64, 12)
    with pytest.raises(ValueError, match="step mode must be one of"):
        layer.setup_step("diagonal")


@given(ssm_sizes(), seeds, l_kernel_modes, st.sampled_from([linear_step_coefficients, step_matrices]))
def test_float32_recurrence_is_built_in_float64_and_rounded_once(sizes, seed, mode, build):
    """A float32 layer's recurrence (O(N) coefficients, or the dense matrices) is bit for bit the one built by a
    float64 copy of the kernel from the same (dt, Lambda, P, B, C) (the float32 layer's own values, exactly, in
    float64), cast to float32 at the end. A build in float32 rounds at every operation instead, which the
    float32 step == convolution tolerances cannot resolve (its errors stay within ~3x of the correct build's)."""
    H, N2, n_ssm, L = sizes
    kernel32 = helpers.s4_layer(H, N2, n_ssm, seed, torch.float32, l_kernel_for(mode, L)).layer.kernel
    kernel64 = copy.deepcopy(kernel32).double()
    same_values = tuple(
        x.detach().to(torch.complex128 if x.is_complex() else torch.float64) for x in kernel32.ssm_parameters()
    )
    kernel64.ssm_parameters = lambda: same_values  # dt = exp(inv_dt) and Lambda as the float32 model evaluates them
    for got, wanted in zip(build(kernel32), build(kernel64), strict=True):
        assert got.dtype == (torch.complex64 if wanted.is_complex() else torch.float32)
        assert torch.equal(got, wanted.to(got.dtype))

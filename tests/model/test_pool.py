"""DownPool / UpPool: the index mapping, shapes, causality, step buffering, and a pure step."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference import sashimi as ref
from sashimi.core.shapes import ShapeError
from sashimi.harness.verdict import assert_close
from sashimi.model.pool import DownPool, UpPool
from tests.helpers import randn, seeds
from tests.model import purity

pools = st.sampled_from([1, 2, 3, 4])


@given(pools, st.integers(1, 4), st.integers(1, 5), st.sampled_from([1, 2]), seeds)
def test_down_pool_matches_reference(P, H, Lc, E, seed):
    torch.manual_seed(seed)
    pool = DownPool(H, E, P).double()
    x = randn(seed, 2, Lc * P, H)
    y = pool(x)
    assert y.shape == (2, Lc, H * E)
    expected = ref.down_pool(x.numpy(), pool.linear.weight.detach().numpy(), pool.linear.bias.detach().numpy(), P)
    assert_close(y, expected, "model_float64")


@given(pools, st.integers(1, 4), st.integers(1, 5), st.sampled_from([1, 2]), seeds)
def test_up_pool_matches_reference(P, H_out, Lc, E, seed):
    torch.manual_seed(seed)
    pool = UpPool(H_out * E, E, P).double()
    x = randn(seed, 2, Lc, H_out * E)
    y = pool(x)
    assert y.shape == (2, Lc * P, H_out)
    expected = ref.up_pool(x.numpy(), pool.linear.weight.detach().numpy(), pool.linear.bias.detach().numpy(), P)
    assert_close(y, expected, "model_float64")


@given(pools, st.integers(2, 5), seeds, st.data())
def test_up_pool_is_causal(P, Lc, seed, data):
    """Coarse step l feeds only fine times >= (l + 1) P: the one-step shift."""
    pool = UpPool(4, 2, P).double()
    x = randn(seed, 1, Lc, 4)
    l = data.draw(st.integers(0, Lc - 1))
    z = x.clone()
    z[:, l] += 1.0
    with torch.no_grad():
        diff = (pool(x) - pool(z)).abs().sum(-1)[0]
    assert torch.all(diff[: (l + 1) * P] == 0)
    if l + 1 < Lc:
        assert diff[(l + 1) * P :].max() > 0


@given(pools, st.integers(1, 4), seeds)
def test_down_pool_sees_only_its_block(P, Lc, seed):
    """DownPool output at coarse step l depends on fine times l P .. l P + P - 1 only."""
    pool = DownPool(3, 2, P).double()
    x = randn(seed, 1, Lc * P, 3)
    t = seed % (Lc * P)
    z = x.clone()
    z[:, t] += 1.0
    with torch.no_grad():
        diff = (pool(x) - pool(z)).abs().sum(-1)[0]
    changed = torch.nonzero(diff).flatten().tolist()
    assert changed == [t // P]


@given(pools, st.integers(1, 4), seeds)
def test_pool_steps_equal_forward(P, Lc, seed):
    """DownPool then UpPool, sample by sample: buffering and refills reproduce the parallel path."""
    torch.manual_seed(seed)
    down, up = DownPool(3, 2, P).double(), UpPool(6, 2, P).double()
    x = randn(seed, 2, Lc * P, 3)
    with torch.no_grad():
        parallel = up(down(x))
        d_state, u_state, out = down.default_state(2), up.default_state(2), []
        for t in range(Lc * P):
            coarse, d_state = down.step(x[:, t], d_state)
            y, u_state = up.step(coarse, u_state)
            out.append(y)
    assert_close(torch.stack(out, 1), parallel, "model_step_vs_conv_float64")
    assert np.isfinite(parallel.numpy()).all()


@given(pools, st.integers(1, 4), seeds)
def test_pool_steps_leave_the_callers_buffers_untouched(P, Lc, seed):
    """At every fine step, DownPool.step and UpPool.step leave the buffer list they were given as it was
    (no append or pop on the caller's list) and give the same output when called again from it."""
    torch.manual_seed(seed)
    down, up = DownPool(3, 2, P).double(), UpPool(6, 2, P).double()
    x = randn(seed, 2, Lc * P, 3)
    d_state, u_state = down.default_state(2), up.default_state(2)
    for t in range(Lc * P):
        coarse, d_state = purity.assert_step_is_pure(down, x[:, t], d_state)
        _, u_state = purity.assert_step_is_pure(up, coarse, u_state)


def test_up_pool_step_names_a_coarse_input_of_the_wrong_width():
    up = UpPool(6, 2, 4)
    state = up.default_state(1)
    for _ in range(3):  # the pending zeros of the shift; the fourth step takes the coarse input
        _, state = up.step(None, state)
    with pytest.raises(ShapeError, match=r"UpPool.step: dimension H .* must be 6, .* got 5"):
        up.step(torch.zeros(1, 5), state)

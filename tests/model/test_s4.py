"""The S4 layer: against the reference, step mode equals convolution mode, causality, gradients."""

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference import layer as ref_layer
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


@given(ssm_sizes(max_L=24), seeds, l_kernel_modes, st.sampled_from(list(DTYPES)))
def test_layer_matches_reference(sizes, seed, mode, dtype):
    H, N2, n_ssm, L = sizes
    s4_layer = helpers.s4_layer(H, N2, n_ssm, seed, DTYPES[dtype], l_kernel_for(mode, L))
    params = helpers.numpy_state(s4_layer)
    u = np.random.default_rng(seed).standard_normal((2, L, H))
    y = s4_layer(torch.from_numpy(u).to(DTYPES[dtype]))
    assert_close(y, ref_layer.s4_layer(params, u), f"layer_{dtype}")


@given(ssm_sizes(max_L=48), seeds, l_kernel_modes, st.sampled_from(list(DTYPES)))
def test_step_equals_convolution(sizes, seed, mode, dtype):
    H, N2, n_ssm, L = sizes
    layer = helpers.s4_layer(H, N2, n_ssm, seed, DTYPES[dtype], l_kernel_for(mode, L))
    u = randn(seed, 3, L, H, dtype=DTYPES[dtype])
    with torch.no_grad():
        y_conv = layer(u)  # first: a fresh layer converts C to C~ here, as published
        y_step = rollout(layer, u)
    assert_close(y_step, y_conv, f"step_vs_conv_{dtype}")


def test_step_equals_convolution_at_init_N64(device):
    """The HiPPO-LegS init at N = 64, the far-from-normal case where a naive diagonal step fails."""
    torch.manual_seed(0)
    from sashimi.model.s4 import S4Layer

    layer = S4Layer(8, n_ssm=1).to(device)
    u = torch.randn(2, 300, 8, device=device)
    with torch.no_grad():
        assert_close(rollout(layer, u), layer(u), "step_vs_conv_float32")


@given(ssm_sizes(max_L=32), seeds, st.data())
def test_causality(sizes, seed, data):
    """Changing u at position t changes no output before t (and does change the output at t)."""
    H, N2, n_ssm, L = sizes
    layer = helpers.s4_layer(H, N2, n_ssm, seed, torch.float64, L)
    t = data.draw(st.integers(0, L - 1))
    u = randn(seed, 2, L, H)
    v = u.clone()
    v[:, t] += randn(seed + 1, 2, H) + 1.0
    with torch.no_grad():
        y, z = layer(u), layer(v)
    scale = float(y.abs().max()) + 1.0
    before = (y[:, :t] - z[:, :t]).abs()
    assert before.numel() == 0 or float(before.max()) <= 1e-12 * scale
    assert float((y[:, t] - z[:, t]).abs().max()) > 1e-8


def test_gradcheck_all_parameters_and_input():
    """Finite differences vs autograd in float64, through every parameter and the input."""
    layer = helpers.s4_layer(H=2, N2=2, n_ssm=None, seed=3, dtype=torch.float64, l_kernel=6)
    names = [name for name, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for _, p in layer.named_parameters())
    u = randn(4, 2, 6, 2).requires_grad_(True)

    def f(u, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (u,))

    assert torch.autograd.gradcheck(f, (u, *params), eps=1e-6, atol=1e-5, rtol=1e-3)
    assert int(layer.layer.kernel.l_kernel) == 6  # no C~ rewrite happened inside the check


def test_gradients_reach_every_parameter():
    layer = helpers.s4_layer(H=3, N2=4, n_ssm=1, seed=5)
    layer(randn(1, 2, 10, 3)).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_fresh_layer_writes_C_tilde_once():
    """First forward turns C into C~ for L; a shorter call leaves it; a longer one doubles l_kernel."""
    layer = helpers.s4_layer(H=2, N2=3, n_ssm=None, seed=7)
    C0 = layer.layer.kernel.C.detach().clone()
    layer(randn(0, 1, 10, 2))
    assert int(layer.layer.kernel.l_kernel) == 10 and not torch.equal(C0, layer.layer.kernel.C)
    C1 = layer.layer.kernel.C.detach().clone()
    layer(randn(0, 1, 7, 2))
    assert int(layer.layer.kernel.l_kernel) == 10 and torch.equal(C1, layer.layer.kernel.C)
    layer(randn(0, 1, 35, 2))
    assert int(layer.layer.kernel.l_kernel) == 40
    assert np.isfinite(layer.layer.kernel.C.detach().numpy()).all()

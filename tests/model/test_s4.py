"""The S4 layer: against the reference, step mode equals convolution mode, causality, gradients, a pure
step, the cached spectrum across length changes, and dropout (eval: none; train: elements dropped and rescaled)."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import specs
from reference import layer as ref_layer
from sashimi.core.config import S4Options
from sashimi.harness.helpers import kernel_condition
from sashimi.harness.verdict import assert_close
from sashimi.model import cauchy
from sashimi.model.kernel import kernel_cache
from sashimi.model.s4 import S4Layer, kernel_spectrum
from tests import helpers
from tests.helpers import (
    DTYPES,
    l_kernel_for,
    l_kernel_modes,
    randn,
    rollout,
    s4_variants,
    seeds,
    ssm_sizes,
)
from tests.model import purity


@given(ssm_sizes(max_L=24), seeds, l_kernel_modes, st.sampled_from(list(DTYPES)), s4_variants)
def test_layer_matches_reference(sizes, seed, mode, dtype, variant):
    H, N2, n_ssm, L = sizes
    dt_transform, output = variant
    s4_layer = helpers.s4_layer(
        H, N2, n_ssm, seed, DTYPES[dtype], l_kernel_for(mode, L), dt_transform=dt_transform, output=output
    )
    params = helpers.numpy_state(s4_layer)
    u = np.random.default_rng(seed).standard_normal((2, L, H))
    y = s4_layer(torch.from_numpy(u).to(DTYPES[dtype]))
    want = ref_layer.s4_layer(params, u, dt_transform, output)
    assert_close(y, want, f"layer_{dtype}", condition=kernel_condition(s4_layer, L))


@given(ssm_sizes(max_L=48), seeds, l_kernel_modes, st.sampled_from(list(DTYPES)), s4_variants)
def test_step_equals_convolution(sizes, seed, mode, dtype, variant):
    H, N2, n_ssm, L = sizes
    dt_transform, output = variant
    layer = helpers.s4_layer(
        H, N2, n_ssm, seed, DTYPES[dtype], l_kernel_for(mode, L), dt_transform=dt_transform, output=output
    )
    u = randn(seed, 3, L, H, dtype=DTYPES[dtype])
    with torch.no_grad():
        y_conv = layer(u)  # first: a fresh layer converts C to C~ here, as published
        y_step = rollout(layer, u)
    assert_close(y_step, y_conv, f"step_vs_conv_{dtype}", condition=kernel_condition(layer, L))


def test_step_equals_convolution_at_init_N64(device):
    """The HiPPO-LegS init at N = 64, the far-from-normal case where a naive diagonal step fails."""
    torch.manual_seed(0)
    layer = S4Layer(8, S4Options(n_ssm=1)).to(device)
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

    tol = specs.load("tolerances")["gradcheck"]
    assert torch.autograd.gradcheck(f, (u, *params), eps=1e-6, atol=tol["atol"], rtol=tol["rtol"])
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


@given(ssm_sizes(max_L=12), seeds, l_kernel_modes, st.sampled_from(["linear", "dense"]), st.sampled_from(list(DTYPES)))
def test_step_leaves_the_state_and_the_layer_untouched(sizes, seed, kernel_mode, step_mode, dtype):
    """At every position: the caller's state is unchanged, a second step from it gives the same output and
    state, and no parameter or buffer moves (the recurrence is built once, in setup_step)."""
    H, N2, n_ssm, L = sizes
    layer = helpers.s4_layer(H, N2, n_ssm, seed, DTYPES[dtype], l_kernel_for(kernel_mode, L))
    u = randn(seed, 2, L, H, dtype=DTYPES[dtype])
    layer.setup_step(step_mode)
    weights = copy.deepcopy(layer.state_dict())
    state = layer.default_state(2)
    for t in range(L):
        _, state = purity.assert_step_is_pure(layer, u[:, t], state)
    purity.assert_same_state(layer.state_dict(), weights)


lengths = st.lists(st.integers(1, 50), min_size=2, max_size=5)
chunk_sizes = st.one_of(st.none(), st.integers(1, 5))


@given(ssm_sizes(max_L=20), seeds, l_kernel_modes, lengths, chunk_sizes)
def test_cached_spectrum_and_output_equal_uncached_as_lengths_change(sizes, seed, mode, Ls, chunk):
    """Eval calls at lengths that go down, up (extending C~) and back give, at every call, the spectrum and
    output of an uncached copy of the layer taken just before the call (chunk: frequencies per Cauchy chunk)."""
    H, N2, n_ssm, L0 = sizes
    layer = helpers.s4_layer(H, N2, n_ssm, seed, torch.float64, l_kernel_for(mode, L0)).eval()
    u = randn(seed, 2, max(Ls), H)
    with pytest.MonkeyPatch.context() as mp, torch.no_grad():
        if chunk is not None:
            mp.setattr(cauchy, "_chunk_size", lambda H, N2, F: chunk)
        for L in Ls:
            fresh = copy.deepcopy(layer)
            spectrum, y = layer.layer.spectrum(L), layer(u[:, :L])
            with kernel_cache(False):
                assert torch.equal(spectrum, kernel_spectrum(fresh.layer.kernel(L)))
                assert torch.equal(y, fresh(u[:, :L]))
            purity.assert_same_state(layer.state_dict(), fresh.state_dict())


@given(ssm_sizes(max_L=16), seeds, st.sampled_from([0.25, 0.5]), st.sampled_from(["linear", "dense"]))
def test_dropout_is_off_in_eval_and_drops_rescaled_elements_in_train(sizes, seed, p, mode):
    """Eval: the same output as the same weights with dropout 0, in convolution and step mode, call after call.
    Train: every element is 0 or the eval value / (1 - p), and both occur (B L H >= 128 elements)."""
    H, N2, n_ssm, _ = sizes
    layer = helpers.s4_layer(H, N2, n_ssm, seed, torch.float64, 16)
    with_dropout = S4Layer(H, S4Options(d_state=2 * N2, n_ssm=n_ssm, dropout=p)).double()
    with_dropout.load_state_dict(layer.state_dict())
    layer.eval(), with_dropout.eval()
    u = randn(seed, 8, 16, H)
    with torch.no_grad():
        y = layer(u)
        assert torch.equal(with_dropout(u), y) and torch.equal(with_dropout(u), y)
        y_step = rollout(layer, u, mode=mode)
        assert torch.equal(rollout(with_dropout, u, mode=mode), y_step)
        assert torch.equal(rollout(with_dropout, u, mode=mode), y_step)
        conv = with_dropout.layer(u)  # before the output Linear: where the dropout acts
        with_dropout.train()
        torch.manual_seed(seed)
        dropped = with_dropout.layer(u)
    zero = dropped == 0
    assert bool(zero.any()) and not bool(zero.all())
    assert_close(torch.where(zero, 0.0, dropped), torch.where(zero, 0.0, conv / (1 - p)), "layer_float64")


def test_an_unknown_output_and_step_coefficients_before_setup_step_are_refused():
    with pytest.raises(ValueError, match="S4 output must be 'glu' or 'linear'; got 'gelu'"):
        S4Layer(4, S4Options(output="gelu"))
    layer = S4Layer(4, S4Options(d_state=4))
    with pytest.raises(RuntimeError, match=r"call setup_step\(\) before reading the step coefficients"):
        _ = layer.layer.step_coefficients
    layer.setup_step()
    assert len(layer.layer.step_coefficients) == 5  # (a, b, g, m, c) of the linear recurrence

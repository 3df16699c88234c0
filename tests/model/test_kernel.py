"""SSMKernel: the kernel against the float64 reference (C fresh or C~ for shorter, equal, longer
lengths), the published kernels, and the eval-time cache: its invalidation, and its answers as the length
changes from call to call."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference import layer as ref_layer
from sashimi.harness.verdict import assert_close, compare
from sashimi.model import cauchy
from sashimi.model.kernel import SSMKernel, kernel_cache
from tests import helpers
from tests.helpers import (
    DTYPES,
    l_kernel_for,
    l_kernel_modes,
    model_properties,
    randn,
    seeds,
    ssm_sizes,
)
from tests.model import purity


@given(ssm_sizes(), seeds, l_kernel_modes, st.sampled_from(list(DTYPES)))
def test_kernel_matches_reference(sizes, seed, mode, dtype):
    H, N2, n_ssm, L = sizes
    s4_layer = helpers.s4_layer(H, N2, n_ssm, seed, DTYPES[dtype], l_kernel_for(mode, L))
    params = helpers.numpy_state(s4_layer)
    K = s4_layer.layer.kernel(L)
    assert K.dtype == DTYPES[dtype] and K.shape == (H, L)
    # a mode that barely decays amplifies rounding by this much (the row's rtol takes it as an input)
    condition = ref_layer.s4_kernel_condition(params, L)
    assert_close(K, ref_layer.s4_kernel(params, L), f"kernel_{dtype}", condition=condition)


def test_fresh_kernel_matches_reference_at_init():
    """The HiPPO-LegS init itself (not only random parameters), N = 64."""
    torch.manual_seed(0)
    kernel = SSMKernel(4, N=64, n_ssm=1).double()
    params = {f"layer.kernel.{k}": v.numpy().copy() for k, v in kernel.state_dict().items()}
    assert_close(kernel(100), ref_layer.s4_kernel(params, 100), "kernel_float64")


def test_published_first_kernel(fixture_a):
    """Load the first S4 layer of the published fixture; reproduce its kernel."""
    prefix = "c_layers.0.layer.layer.kernel."
    state = {k[len(prefix) :]: torch.from_numpy(np.asarray(v)) for k, v in fixture_a.items() if k.startswith(prefix)}
    H, N2 = state["C"].shape[1:3]
    kernel = SSMKernel(H, N=2 * N2, n_ssm=None)
    kernel.load_state_dict(state, strict=True)
    l_kernel = int(state["l_kernel"])
    K = kernel(l_kernel)
    assert_close(K, fixture_a["kernel_first_s4"][0], "published_kernel")
    assert compare(K.double(), fixture_a["kernel_float64.c_layers.0.layer"][0], "published_kernel").passed


def test_published_C_tilde_conversion(fixture_a):
    """From the fixture's initial C (l_kernel = 0), the first forward writes the published C~."""
    prefix = "c_layers.0.layer.layer.kernel."
    state = {k[len(prefix) :]: torch.from_numpy(np.asarray(v)) for k, v in fixture_a.items() if k.startswith(prefix)}
    state["C"] = torch.from_numpy(fixture_a["init." + prefix + "C"])
    state["l_kernel"] = torch.from_numpy(np.asarray(fixture_a["init." + prefix + "l_kernel"]))
    assert int(state["l_kernel"]) == 0
    kernel = SSMKernel(state["C"].shape[1], N=2 * state["C"].shape[2])
    kernel.load_state_dict(state, strict=True)
    L = int(fixture_a[prefix + "l_kernel"])
    kernel(L)
    assert int(kernel.l_kernel) == L
    assert_close(kernel.C, fixture_a[prefix + "C"], "published_C_tilde")


def cached_layer(seed=0):
    layer = helpers.s4_layer(3, 4, 1, seed, torch.float64, 12)
    return layer, layer.layer.kernel


def fresh_kernel(kernel, L):
    with torch.no_grad(), kernel_cache(False):
        return kernel(L)


def test_cache_reuses_the_kernel_without_autograd():
    _, kernel = cached_layer()
    with torch.no_grad():
        K1, K2 = kernel(12), kernel(12)
    assert K1 is K2
    with torch.no_grad(), kernel_cache(False):
        assert kernel(12) is not K1


def test_cache_is_never_used_with_autograd():
    _, kernel = cached_layer()
    with torch.no_grad():
        kernel(12)
    K1, K2 = kernel(12), kernel(12)
    assert K1.requires_grad and K2.requires_grad and K1 is not K2


@pytest.mark.parametrize("change", ["optimizer", "load_state_dict", "in_place", "dtype"])
def test_cache_is_invalidated_when_parameters_change(change):
    layer, kernel = cached_layer()
    with torch.no_grad():
        K_before = kernel(12)
    if change == "optimizer":
        kernel(12).square().sum().backward()
        torch.optim.SGD(layer.parameters(), lr=0.1).step()
    elif change == "load_state_dict":
        other, _ = cached_layer(seed=1)
        layer.load_state_dict(other.state_dict())
    elif change == "in_place":
        with torch.no_grad():
            kernel.A_imag.mul_(1.5)
    else:
        layer.float()
    with torch.no_grad():
        K_after = kernel(12)
    assert not torch.equal(K_after.double(), K_before)
    assert torch.equal(K_after, fresh_kernel(kernel, 12))


def test_cached_layer_output_equals_uncached():
    layer, _ = cached_layer()
    u = randn(0, 2, 12, 3)
    with torch.no_grad():
        layer(u)
        cached = layer(u)
        with kernel_cache(False):
            uncached = layer(u)
    assert torch.equal(cached, uncached)


@model_properties()
@given(
    ssm_sizes(max_L=20),
    seeds,
    l_kernel_modes,
    st.lists(st.integers(1, 50), min_size=2, max_size=6),
    st.one_of(st.none(), st.integers(1, 5)),
    st.sampled_from(list(DTYPES)),
)
def test_cached_kernel_equals_uncached_as_lengths_change(sizes, seed, mode, Ls, chunk, dtype):
    """Without autograd, calls at lengths that go down, up (doubling C~) and back each return exactly what an
    uncached copy of the kernel, taken just before the call, returns; C~ and l_kernel end up the same too.
    `chunk` sets the frequencies per Cauchy chunk (None: the library's choice, one chunk at these sizes)."""
    H, N2, n_ssm, L0 = sizes
    kernel = helpers.s4_layer(H, N2, n_ssm, seed, DTYPES[dtype], l_kernel_for(mode, L0)).layer.kernel
    with pytest.MonkeyPatch.context() as mp, torch.no_grad():
        if chunk is not None:
            mp.setattr(cauchy, "_chunk_size", lambda H, N2, F: chunk)
        for L in Ls:
            fresh = copy.deepcopy(kernel)
            K = kernel(L)
            with kernel_cache(False):
                assert torch.equal(K, fresh(L))
            assert kernel(L) is K  # the second call at the same length is the cached one
            purity.assert_same_state(kernel.state_dict(), fresh.state_dict())
            assert int(kernel.l_kernel) >= L


@pytest.mark.parametrize("l_kernel", [None, 0, 7])
def test_the_kernel_condition_is_taken_at_the_lengths_solved(l_kernel):
    """1 / min |1 - lambda^l| over A_bar's eigenvalues (taken here from the fast model's own float64
    A_bar), for l = L, and l_kernel too when C holds C~ for it; a state without the buffer, or with
    0, is a fresh C: L alone."""
    layer = helpers.s4_layer(2, 3, 1, 5, torch.float64, 7 if l_kernel == 7 else 0)
    params = helpers.numpy_state(layer)
    if l_kernel is None:
        del params["layer.kernel.l_kernel"]
    A_bar = layer.layer.kernel.discretized_float64()[0].numpy()
    eig = np.linalg.eigvals(A_bar)
    want = max(1.0, *(1 / np.min(np.abs(1 - eig[h] ** l)) for h in range(2) for l in [12, *([7] if l_kernel else [])]))
    assert ref_layer.s4_kernel_condition(params, 12) == pytest.approx(want, rel=1e-9)
    assert np.isfinite(want)


def test_the_power_condition_by_hand():
    """lambda 0.5, l 1: 1 / 0.5 = 2; lambda 0.9, l 2: 1 / 0.19, and l 1 too: 1 / 0.1; lambda -0.5, l 1:
    1 / 1.5, under 1: 1."""
    assert ref_layer.power_condition(np.array([0.5, -0.5], complex), [1]) == pytest.approx(2.0)
    assert ref_layer.power_condition(np.array([0.9], complex), [2]) == pytest.approx(1 / 0.19)
    assert ref_layer.power_condition(np.array([0.9], complex), [2, 1]) == pytest.approx(10.0)  # the worse length
    assert ref_layer.power_condition(np.array([-0.5, 0.0], complex), [1]) == 1.0

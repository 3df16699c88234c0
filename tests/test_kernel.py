"""The fast DPLR kernel computes what the float64 reference computes, on random parameters."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference import layer as ref_layer
from reference import s4 as ref
from sashimi.kernel import SSMKernel, dense_bilinear, hippo_legs_nplr
from sashimi.spec import assert_close, compare
from tests import factories
from tests.strategies import DTYPES, l_kernel_for, l_kernel_modes, seeds, ssm_sizes


@given(ssm_sizes(), seeds, l_kernel_modes, st.sampled_from(list(DTYPES)))
def test_kernel_matches_reference(sizes, seed, mode, dtype):
    H, N2, n_ssm, L = sizes
    s4_layer = factories.s4_layer(H, N2, n_ssm, seed, DTYPES[dtype], l_kernel_for(mode, L))
    params = factories.numpy_state(s4_layer)
    K = s4_layer.layer.kernel(L)
    assert K.dtype == DTYPES[dtype] and K.shape == (H, L)
    assert_close(K, ref_layer.s4_kernel(params, L), f"kernel_{dtype}")


@given(ssm_sizes(max_L=24), seeds, l_kernel_modes, st.sampled_from(list(DTYPES)))
def test_layer_matches_reference(sizes, seed, mode, dtype):
    H, N2, n_ssm, L = sizes
    s4_layer = factories.s4_layer(H, N2, n_ssm, seed, DTYPES[dtype], l_kernel_for(mode, L))
    params = factories.numpy_state(s4_layer)
    u = np.random.default_rng(seed).standard_normal((2, L, H))
    y = s4_layer(torch.from_numpy(u).to(DTYPES[dtype]))
    assert_close(y, ref_layer.s4_layer(params, u), f"layer_{dtype}")


def test_fresh_kernel_matches_reference_at_init():
    """The HiPPO-LegS init itself (not only random parameters), N = 64."""
    torch.manual_seed(0)
    kernel = SSMKernel(4, N=64, n_ssm=1).double()
    params = {f"layer.kernel.{k}": v.numpy().copy() for k, v in kernel.state_dict().items()}
    assert_close(kernel(100), ref_layer.s4_kernel(params, 100), "kernel_float64")


@pytest.mark.parametrize("N", [2, 8, 64])
def test_init_matches_reference_nplr(N):
    Lambda, P, B = hippo_legs_nplr(N)
    Lambda_ref, P_ref, B_ref, _ = ref.nplr_legs(N)
    assert_close(Lambda, Lambda_ref, "reference_identities_float64")
    # eigenvector phases are LAPACK's choice: compare what does not depend on them
    assert_close(P * P.conj(), P_ref * P_ref.conj(), "reference_identities_float64")
    assert_close(B.real * P.real.sign(), B_ref.real * np.sign(P_ref.real), "reference_identities_float64")


def test_init_ranges():
    torch.manual_seed(1)
    kernel = SSMKernel(256, n_ssm=None)
    dt = kernel.inv_dt.exp()
    assert 1e-3 <= dt.min() and dt.max() <= 1e-1
    assert kernel.inv_dt.shape == (256, 1) and kernel.A_real.shape == (256, 32)
    assert kernel.B.shape == (1, 256, 32, 2) and kernel.P.shape == (1, 256, 32, 2) and kernel.C.shape == (1, 256, 32, 2)
    assert torch.allclose(kernel.A_real.exp(), torch.tensor(0.5))
    assert kernel.B[..., 1].abs().max() <= 2.0
    assert int(kernel.l_kernel) == 0
    C = torch.view_as_complex(kernel.C)
    assert abs(C.real.std().item() - 2**-0.5) < 0.02 and abs(C.imag.std().item() - 2**-0.5) < 0.02


@given(st.floats(-80, 80), st.floats(-1e6, 1e6))
def test_lambda_is_hurwitz_for_any_parameter_values(A_real, A_imag):
    """Re Lambda = -exp(A_real) < 0 for every representable float32 A_real (exp(-80) is still > 0)."""
    kernel = SSMKernel(1, N=4, n_ssm=1)
    with torch.no_grad():
        kernel.A_real.fill_(A_real)
        kernel.A_imag.fill_(A_imag)
    _, Lambda, _, _, _ = kernel.ssm_parameters()
    assert torch.all(Lambda.real < 0)


@given(st.floats(-10, 10), st.floats(-1e3, 1e3), st.floats(-10, 2), st.integers(1, 8), seeds)
def test_discretization_is_stable_for_any_parameter_values(A_real, A_imag, inv_dt, N2, seed):
    """A = Lambda - P P^H has a negative definite Hermitian part for any P, so its bilinear
    discretization is a strict contraction: spectral norm and spectral radius < 1.
    (Ranges keep 1 - |A_bar| above float64 resolution; the property holds beyond them too.)"""
    kernel = SSMKernel(1, N=2 * N2, n_ssm=1).double()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        kernel.A_real.fill_(A_real)
        kernel.A_imag.copy_(torch.from_numpy(A_imag * rng.uniform(-1, 1, kernel.A_imag.shape)))
        kernel.inv_dt.fill_(inv_dt)
        kernel.P.copy_(torch.from_numpy(rng.standard_normal(kernel.P.shape) * rng.uniform(0, 10)))
    dt, Lambda, P, B, _ = kernel.ssm_parameters()
    p = torch.cat([P, P.conj()], -1)
    A = torch.diag_embed(torch.cat([Lambda, Lambda.conj()], -1)) - p[..., :, None] * p.conj()[..., None, :]
    assert torch.linalg.eigvalsh(A + A.mH).max() < 0
    A_bar, _ = dense_bilinear(dt, Lambda, P, B)
    assert torch.linalg.eigvals(A_bar).abs().max() < 1
    assert torch.linalg.matrix_norm(A_bar, ord=2).max() < 1


def test_published_first_kernel(fixture_a):
    """Load the first S4 layer of the published fixture; reproduce its kernel."""
    prefix = "c_layers.0.layer.layer.kernel."
    state = {k[len(prefix):]: torch.from_numpy(np.asarray(v)) for k, v in fixture_a.items() if k.startswith(prefix)}
    H, N2 = state["C"].shape[1:3]
    kernel = SSMKernel(H, N=2 * N2, n_ssm=None)
    kernel.load_state_dict(state, strict=True)
    l_kernel = int(state["l_kernel"])
    K = kernel(l_kernel)
    assert_close(K, fixture_a["kernel_first_s4"][0], "published_kernel")
    assert compare(K.double(), fixture_a["kernel_float64.c_layers.0.layer"][0], "published_kernel").holds


def test_published_C_tilde_conversion(fixture_a):
    """From the fixture's initial C (l_kernel = 0), the first forward writes the published C~."""
    prefix = "c_layers.0.layer.layer.kernel."
    state = {k[len(prefix):]: torch.from_numpy(np.asarray(v)) for k, v in fixture_a.items() if k.startswith(prefix)}
    state["C"] = torch.from_numpy(fixture_a["init." + prefix + "C"])
    state["l_kernel"] = torch.from_numpy(np.asarray(fixture_a["init." + prefix + "l_kernel"]))
    assert int(state["l_kernel"]) == 0
    kernel = SSMKernel(state["C"].shape[1], N=2 * state["C"].shape[2])
    kernel.load_state_dict(state, strict=True)
    L = int(fixture_a[prefix + "l_kernel"])
    kernel(L)
    assert int(kernel.l_kernel) == L
    assert_close(kernel.C, fixture_a[prefix + "C"], "published_C_tilde")

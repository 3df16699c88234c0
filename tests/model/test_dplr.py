"""The Hurwitz parameterization and the bilinear discretization: stable for any parameter values."""

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference import s4 as ref_s4
from sashimi.harness.verdict import assert_close
from sashimi.model.dplr import dense_bilinear
from sashimi.model.kernel import SSMKernel
from tests.helpers import seeds


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


@given(st.integers(1, 6), st.floats(-3, 1), st.floats(0, 3), seeds)
def test_the_closed_form_inverse_is_the_reference_solve(N2, log_dt, p_scale, seed):
    """Sherman-Morrison's M against NumPy's explicit inverse of I - dt/2 A (reference/s4.py), channel
    by channel, for rank-one parts from none to large."""
    rng = np.random.default_rng(seed)
    H = 2
    Lambda = -np.exp(rng.uniform(-3, 1, (H, N2))) - 1j * rng.uniform(-50, 50, (H, N2))
    P = p_scale * (rng.standard_normal((H, N2)) + 1j * rng.standard_normal((H, N2)))
    B = rng.standard_normal((H, N2)) + 1j * rng.standard_normal((H, N2))
    dt = np.exp(log_dt + rng.uniform(-1, 0, (H, 1)))
    A_bar, B_bar = dense_bilinear(*(torch.from_numpy(x) for x in (dt, Lambda, P, B)))
    for h in range(H):
        want_A, want_B = ref_s4.dense_bilinear(
            ref_s4.dense_A(Lambda[h], P[h]), ref_s4.conj_pairs(B[h]), float(dt[h, 0])
        )
        assert_close(A_bar[h], torch.from_numpy(want_A), "reference_identities_float64")
        assert_close(B_bar[h], torch.from_numpy(want_B), "reference_identities_float64")

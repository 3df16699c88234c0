"""The Hurwitz parameterization and the bilinear discretization: stable for any parameter values."""

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

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

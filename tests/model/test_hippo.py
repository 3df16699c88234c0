"""HiPPO-LegS initialization: the published NPLR procedure and the init ranges."""

import numpy as np
import pytest
import torch

from reference import s4 as ref
from sashimi.harness.verdict import assert_close
from sashimi.model.hippo import hippo_legs_nplr
from sashimi.model.kernel import SSMKernel


@pytest.mark.parametrize("N", [2, 8, 64])
def test_init_matches_reference_nplr(N):
    Lambda, P, B = hippo_legs_nplr(N)
    Lambda_ref, P_ref, B_ref, _ = ref.hippo_legs_nplr(N)
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


@pytest.mark.parametrize("N", [2, 8, 64])
def test_init_does_not_depend_on_lapacks_eigenvector_phases(N, monkeypatch):
    """Another LAPACK may return each eigenvector times any unit phase (two CPUs here differed in
    one sign at N = 8): the initialization must come out the same."""
    expected = hippo_legs_nplr(N)
    eigh = torch.linalg.eigh
    phases = torch.exp(1j * torch.from_numpy(np.random.default_rng(N).uniform(-np.pi, np.pi, N)))

    def rotated_eigh(A):
        W, V = eigh(A)
        return W, V * phases

    monkeypatch.setattr(torch.linalg, "eigh", rotated_eigh)
    for got, want in zip(hippo_legs_nplr(N), expected):
        assert_close(got, want, "reference_identities_float64")

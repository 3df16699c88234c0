"""The float64 reference agrees with itself: every identity of the S4 derivation, on random draws."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from reference import s4
from sashimi.harness.verdict import assert_close
from tests.helpers import seeds


def random_ssm(seed: int, N2: int):
    rng = np.random.default_rng(seed)

    def c(*shape):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)

    Lambda = -np.exp(rng.uniform(-2, 2, N2)) - 1j * rng.uniform(-30, 30, N2)
    Delta = float(np.exp(rng.uniform(np.log(1e-4), 0.0)))
    return Lambda, c(N2), c(N2), c(N2), Delta


sizes = st.tuples(st.integers(1, 6), st.integers(1, 33), seeds)


@given(sizes)
def test_kernel_powers_equals_generating_function_equals_dplr(args):
    N2, L, seed = args
    Lambda, P, B, C, Delta = random_ssm(seed, N2)
    A_bar, B_bar = s4.dense_bilinear(s4.dense_A(Lambda, P), s4.conj_pairs(B), Delta)
    Ct = s4.C_tilde(A_bar, s4.conj_pairs(C), L)
    K_powers = s4.kernel_powers(A_bar, B_bar, s4.conj_pairs(C), L)
    assert_close(s4.kernel_generating_function(A_bar, B_bar, Ct, L), K_powers, "reference_identities_float64")
    assert_close(s4.dplr_kernel(Lambda, P, B, Ct[:N2], Delta, L), K_powers, "reference_identities_float64")


@given(sizes)
def test_convolution_equals_recurrence(args):
    N2, L, seed = args
    Lambda, P, B, C, Delta = random_ssm(seed, N2)
    A_bar, B_bar = s4.dense_bilinear(s4.dense_A(Lambda, P), s4.conj_pairs(B), Delta)
    u = np.random.default_rng(seed + 1).standard_normal(L)
    K = s4.kernel_powers(A_bar, B_bar, s4.conj_pairs(C), L)
    assert_close(
        s4.causal_convolution(u, K), s4.recurrence(A_bar, B_bar, s4.conj_pairs(C), u), "reference_identities_float64"
    )


@given(sizes)
def test_C_tilde_round_trip(args):
    N2, L, seed = args
    Lambda, P, B, C, Delta = random_ssm(seed, N2)
    A_bar, _ = s4.dense_bilinear(s4.dense_A(Lambda, P), s4.conj_pairs(B), Delta)
    C_f = s4.conj_pairs(C)
    assert_close(s4.C_from_C_tilde(A_bar, s4.C_tilde(A_bar, C_f, L), L), C_f, "reference_identities_float64")


@given(st.sampled_from([2, 4, 8, 16, 64]))
def test_nplr_reconstructs_hippo_legs(N):
    """A = 2 Re(V diag(Lambda) V^H) - P P^T, P = 2 Re(V P_rot), B = 2 Re(V B_rot) before the clip."""
    A, B = s4.hippo_legs(N)
    P = s4.legs_rank_correction(N)
    Lambda, P_rot, _, V = s4.hippo_legs_nplr(N, B_clip=np.inf)
    _, _, B_rot, _ = s4.hippo_legs_nplr(N, B_clip=np.inf)
    assert np.allclose(Lambda.real, -0.5)
    assert np.all(Lambda.imag <= 0)
    assert_close(2 * (V @ np.diag(Lambda) @ V.conj().T).real - np.outer(P, P), A, "reference_identities_float64")
    assert_close(2 * (V @ P_rot).real, P, "reference_identities_float64")
    assert_close(2 * (V @ B_rot).real, B, "reference_identities_float64")


def test_hippo_legs_entries():
    """Spot values from the closed form: A_10 = -sqrt(3), A_11 = -2, A_01 = 0, B_2 = sqrt(5)."""
    A, B = s4.hippo_legs(3)
    assert A[1, 0] == -np.sqrt(3) and A[1, 1] == -2 and A[0, 1] == 0 and A[2, 0] == -np.sqrt(5)
    assert B[2] == np.sqrt(5)


def test_B_clip_bites_at_N64():
    """Unclipped |Im B| reaches ~41 at N = 64; the clip bounds it to 2."""
    _, _, B_free, _ = s4.hippo_legs_nplr(64, B_clip=np.inf)
    _, _, B, _ = s4.hippo_legs_nplr(64)
    assert np.abs(B_free.imag).max() > 30
    assert np.abs(B.imag).max() <= 2.0


@given(st.floats(1e-4, 1.0), st.floats(-5.0, -0.01), st.floats(-10, 10))
def test_zoh_is_exact_for_a_scalar_system(Delta, a_re, a_im):
    """ZOH: A_bar = exp(Delta a), B_bar = (exp(Delta a) - 1)/a b, the exact sample of x' = a x + b u."""
    a = np.array([[a_re + 1j * a_im]])
    A_bar, B_bar = s4.discretize_zoh(a, np.array([1.0 + 0j]), Delta)
    assert_close(A_bar[0, 0], np.exp(Delta * a[0, 0]), "reference_identities_float64")
    assert_close(B_bar[0], (np.exp(Delta * a[0, 0]) - 1) / a[0, 0], "reference_identities_float64")


@given(sizes)
def test_bilinear_and_zoh_agree_to_second_order(args):
    """Both discretizations match exp(Delta A) to O(Delta^3); they differ, so a swap is detectable."""
    N2, _, seed = args
    Lambda, P, B, _, _ = random_ssm(seed, N2)
    A = s4.dense_A(Lambda, P)
    scale = np.linalg.norm(A, 2)
    Delta = 1e-2 / scale
    A_bil, _ = s4.dense_bilinear(A, s4.conj_pairs(B), Delta)
    A_zoh, _ = s4.discretize_zoh(A, s4.conj_pairs(B), Delta)
    gap = np.linalg.norm(A_bil - A_zoh, 2)
    assert gap <= (Delta * scale) ** 3
    assert gap > 0

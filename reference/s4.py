"""S4 (DPLR, HiPPO-LegS, bilinear) in float64 NumPy, one function per equation.

Shapes use the glossary of `sashimi.shapes`: N the full state (both halves of
each conjugate pair), N2 = N/2 the stored modes, L length, H channels.
One channel at a time; the layer loops over channels.
"""

import numpy as np
import scipy.linalg
from jaxtyping import Complex, Float
from numpy import ndarray


def hippo_legs(N: int) -> tuple[Float[ndarray, "N N"], Float[ndarray, " N"]]:
    """HiPPO-LegS: A_nk = -sqrt(2n+1) sqrt(2k+1) (n > k), -(n+1) (n = k), 0 (n < k); B_n = sqrt(2n+1)."""
    A = np.zeros((N, N))
    for n in range(N):
        for k in range(N):
            if n > k:
                A[n, k] = -np.sqrt(2 * n + 1) * np.sqrt(2 * k + 1)
            elif n == k:
                A[n, k] = -(n + 1)
    B = np.sqrt(2 * np.arange(N) + 1.0)
    return A, B


def legs_rank_correction(N: int) -> Float[ndarray, " N"]:
    """P_n = sqrt(n + 1/2): A + P P^T = -I/2 + skew-symmetric."""
    return np.sqrt(np.arange(N) + 0.5)


def hippo_legs_nplr(
    N: int, B_clip: float = 2.0
) -> tuple[Complex[ndarray, " N2"], Complex[ndarray, " N2"], Complex[ndarray, " N2"], Complex[ndarray, "N N2"]]:
    """Normal plus low rank form of HiPPO-LegS: A = V diag(Lambda) V^H - P P^H.

    A + P P^T = -I/2 + S with S skew, so Re Lambda = -1/2 and i Im Lambda are the
    eigenvalues of S; `eigh` of -i(A + P P^T) (lower triangle, float64), ascending,
    keeps the N2 modes with negative imaginary part (the published phase convention).
    B and P are rotated into the eigenbasis, Im(B) clipped to [-B_clip, B_clip].
    Returns Lambda, P, B (length N2) and the kept eigenvectors V.
    """
    A, B = hippo_legs(N)
    P = legs_rank_correction(N)
    AP = A + np.outer(P, P)
    W_re = np.mean(np.diag(AP))
    W_im, V = np.linalg.eigh(AP * -1j)
    order = np.argsort(W_im, kind="stable")
    Lambda = (W_re + 1j * W_im[order])[: N // 2]
    V = V[:, order][:, : N // 2]
    B_rot = V.conj().T @ B
    P_rot = V.conj().T @ P
    B_rot = B_rot.real + 1j * np.clip(B_rot.imag, -B_clip, B_clip)
    return Lambda, P_rot, B_rot, V


def conj_pairs(x: Complex[ndarray, " N2"]) -> Complex[ndarray, " N"]:
    """[x; conj x]: the full state vector implied by the N2 stored modes."""
    return np.concatenate([x, x.conj()])


def dense_A(Lambda: Complex[ndarray, " N2"], P: Complex[ndarray, " N2"]) -> Complex[ndarray, "N N"]:
    """A = diag([Lambda; conj Lambda]) - p p^H with p = [P; conj P] (rank 1 couples the halves)."""
    p = conj_pairs(P)
    return np.diag(conj_pairs(Lambda)) - np.outer(p, p.conj())


def dense_bilinear(
    A: Complex[ndarray, "N N"], B: Complex[ndarray, " N"], Delta: float
) -> tuple[Complex[ndarray, "N N"], Complex[ndarray, " N"]]:
    """A_bar = (I - Delta/2 A)^-1 (I + Delta/2 A), B_bar = (I - Delta/2 A)^-1 Delta B."""
    I = np.eye(A.shape[0])
    left = np.linalg.inv(I - Delta / 2 * A)
    return left @ (I + Delta / 2 * A), left @ (Delta * B)


def discretize_zoh(
    A: Complex[ndarray, "N N"], B: Complex[ndarray, " N"], Delta: float
) -> tuple[Complex[ndarray, "N N"], Complex[ndarray, " N"]]:
    """A_bar = exp(Delta A), B_bar = A^-1 (exp(Delta A) - I) B."""
    A_bar = scipy.linalg.expm(Delta * A)
    return A_bar, np.linalg.solve(A, (A_bar - np.eye(A.shape[0])) @ B)


def C_tilde(A_bar: Complex[ndarray, "N N"], C: Complex[ndarray, " N"], L: int) -> Complex[ndarray, " N"]:
    """C~ = (I - A_bar^L)^T C: the C for which the frequency form is the length-L truncation."""
    return (np.eye(A_bar.shape[0]) - np.linalg.matrix_power(A_bar, L)).T @ C


def C_from_C_tilde(A_bar: Complex[ndarray, "N N"], Ct: Complex[ndarray, " N"], L: int) -> Complex[ndarray, " N"]:
    """Inverse of `C_tilde`: solve (I - A_bar^L)^T C = C~."""
    return np.linalg.solve((np.eye(A_bar.shape[0]) - np.linalg.matrix_power(A_bar, L)).T, Ct)


def kernel_powers(
    A_bar: Complex[ndarray, "N N"], B_bar: Complex[ndarray, " N"], C: Complex[ndarray, " N"], L: int
) -> Float[ndarray, " L"]:
    """K_k = C^T A_bar^k B_bar, k = 0..L-1 (plain transpose; real for conjugate-pair vectors)."""
    K = np.zeros(L, dtype=complex)
    x = B_bar.copy()
    for k in range(L):
        K[k] = C @ x
        x = A_bar @ x
    return K.real


def roots_of_unity(L: int) -> Complex[ndarray, " L"]:
    """omega_k = exp(-2 pi i k / L)."""
    return np.exp(-2j * np.pi * np.arange(L) / L)


def kernel_generating_function(
    A_bar: Complex[ndarray, "N N"], B_bar: Complex[ndarray, " N"], Ct: Complex[ndarray, " N"], L: int
) -> Float[ndarray, " L"]:
    """Truncated generating function at the roots of unity, then inverse DFT.

    sum_k C^T A_bar^k B_bar omega^k = C~^T (I - A_bar omega)^-1 B_bar when omega^L = 1.
    """
    I = np.eye(A_bar.shape[0])
    K_hat = np.array([Ct @ np.linalg.solve(I - A_bar * w, B_bar) for w in roots_of_unity(L)])
    return np.fft.ifft(K_hat).real


def cauchy(v: Complex[ndarray, " N"], z: complex, w: Complex[ndarray, " N"]) -> complex:
    """sum_n v_n / (z - w_n)."""
    return complex(np.sum(v / (z - w)))


def dplr_kernel(
    Lambda: Complex[ndarray, " N2"],
    P: Complex[ndarray, " N2"],
    B: Complex[ndarray, " N2"],
    Ct: Complex[ndarray, " N2"],
    Delta: float,
    L: int,
) -> Float[ndarray, " L"]:
    """The S4 frequency kernel: Cauchy sums and Woodbury at z = 2(1 - omega)/(1 + omega).

    K^ = 2/(1 + omega) [r_{C~B} - r_{C~P} r_{QB} / (1 + r_{QP})], Q = conj(P),
    r_cb(z) = Delta sum over both halves of c_n b_n / (z - Delta Lambda_n).
    At omega = -1 (z infinite) the exact limit is K^ = (1/2) Delta sum c_n b_n.
    """
    w = conj_pairs(Delta * Lambda)
    Ct_f, B_f, P_f = conj_pairs(Ct), conj_pairs(B), conj_pairs(P)
    Q_f = P_f.conj()
    K_hat = np.zeros(L, dtype=complex)
    for k, omega in enumerate(roots_of_unity(L)):
        if np.isclose(omega, -1.0, rtol=0, atol=1e-12):
            K_hat[k] = 0.5 * Delta * np.sum(Ct_f * B_f)
            continue
        z = 2 * (1 - omega) / (1 + omega)

        def r(c, b, z=z):
            return Delta * cauchy(c * b, z, w)

        K_hat[k] = 2 / (1 + omega) * (r(Ct_f, B_f) - r(Ct_f, P_f) * r(Q_f, B_f) / (1 + r(Q_f, P_f)))
    return np.fft.ifft(K_hat).real


def causal_convolution(u: Float[ndarray, " L"], K: Float[ndarray, " L"]) -> Float[ndarray, " L"]:
    """y_t = sum_{j <= t} K_j u_{t-j}."""
    return np.convolve(K, u)[: len(u)]


def recurrence(
    A_bar: Complex[ndarray, "N N"],
    B_bar: Complex[ndarray, " N"],
    C: Complex[ndarray, " N"],
    u: Float[ndarray, " L"],
) -> Float[ndarray, " L"]:
    """x_k = A_bar x_{k-1} + B_bar u_k, y_k = C^T x_k (x_{-1} = 0)."""
    x = np.zeros(A_bar.shape[0], dtype=complex)
    y = np.zeros(len(u))
    for k, u_k in enumerate(u):
        x = A_bar @ x + B_bar * u_k
        y[k] = (C @ x).real
    return y

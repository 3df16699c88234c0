"""HiPPO-LegS in normal plus low-rank form: the S4 initialization (docs/DESIGN.md, "HiPPO-LegS initialization")."""

import torch

from sashimi.core.shapes import Complex, Tensor


def hippo_legs_nplr(
    N: int, B_clip: float = 2.0
) -> tuple[Complex[Tensor, " N2"], Complex[Tensor, " N2"], Complex[Tensor, " N2"]]:
    """(Lambda, P, B) of HiPPO-LegS in normal plus low-rank form, float64.

    A_nk = -sqrt(2n+1) sqrt(2k+1) (n > k), -(n+1) (n = k); B_n = sqrt(2n+1);
    P_n = sqrt(n + 1/2). A + P P^T = -I/2 + S (S skew): Re Lambda = -1/2, and
    `eigh` of -i(A + P P^T) gives Im Lambda; the N2 modes of negative imaginary
    part are kept (ascending order), B and P are rotated into that eigenbasis and
    Im B is clipped to [-B_clip, B_clip]. This is the published procedure, with one
    addition: `eigh` leaves each eigenvector's phase to LAPACK, and LAPACK's choice
    differs between CPUs (at N = 8 an AMD EPYC and an Intel Xeon return the first
    mode with opposite signs, so one seed gave two different models). Each
    eigenvector is turned so that its first entry is real and positive. The entries
    LAPACK returns there are real already (sign aside), so the clip, which depends on
    the phase, acts as in the published procedure; only signs can differ from it.
    """
    n = torch.arange(N, dtype=torch.float64)
    r = torch.sqrt(2 * n + 1)
    A = -torch.tril(r[:, None] * r[None, :], diagonal=-1) - torch.diag(n + 1)
    P = torch.sqrt(n + 0.5)
    AP = A + P[:, None] * P[None, :]
    W_im, V = torch.linalg.eigh(AP * -1j)
    order = torch.sort(W_im).indices
    V = V[:, order][:, : N // 2]
    V = V * (V[0].conj() / V[0].abs())  # a phase fixed by the math, not by the CPU
    Lambda = torch.diagonal(AP).mean() + 1j * W_im[order][: N // 2]
    B_rot = V.conj().T @ r.to(V.dtype)
    P_rot = V.conj().T @ P.to(V.dtype)
    B_rot = torch.complex(B_rot.real, B_rot.imag.clamp(-B_clip, B_clip))
    return Lambda, P_rot, B_rot

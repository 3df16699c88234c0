"""The S4 convolution kernel: DPLR state matrix, HiPPO-LegS init, Cauchy + Woodbury kernel.

Parameters are named and shaped as the published implementation's
(`SSMKernelDPLR` of state-spaces/s4), so its state dict loads as it is.
Complex parameters are stored as real views with a trailing axis of 2.
"""

import math

import torch
from torch import nn

from sashimi.shapes import Complex, Float, Tensor


def hippo_legs_nplr(N: int, B_clip: float = 2.0) -> tuple[Complex[Tensor, " N2"], Complex[Tensor, " N2"], Complex[Tensor, " N2"]]:
    """(Lambda, P, B) of HiPPO-LegS in normal plus low-rank form, float64.

    A_nk = -sqrt(2n+1) sqrt(2k+1) (n > k), -(n+1) (n = k); B_n = sqrt(2n+1);
    P_n = sqrt(n + 1/2). A + P P^T = -I/2 + S (S skew): Re Lambda = -1/2, and
    `eigh` of -i(A + P P^T) gives Im Lambda; the N2 modes of negative imaginary
    part are kept (ascending order), B and P are rotated into that eigenbasis and
    Im B is clipped to [-B_clip, B_clip]. This is the published procedure, so the
    eigenvector phases (which the clip depends on) match it.
    """
    n = torch.arange(N, dtype=torch.float64)
    r = torch.sqrt(2 * n + 1)
    A = -torch.tril(r[:, None] * r[None, :], diagonal=-1) - torch.diag(n + 1)
    P = torch.sqrt(n + 0.5)
    AP = A + P[:, None] * P[None, :]
    W_im, V = torch.linalg.eigh(AP * -1j)
    order = torch.sort(W_im).indices
    V = V[:, order][:, : N // 2]
    Lambda = torch.diagonal(AP).mean() + 1j * W_im[order][: N // 2]
    B_rot = V.conj().T @ r.to(V.dtype)
    P_rot = V.conj().T @ P.to(V.dtype)
    B_rot = torch.complex(B_rot.real, B_rot.imag.clamp(-B_clip, B_clip))
    return Lambda, P_rot, B_rot


def conj_pairs(x: Complex[Tensor, "*batch N2"]) -> Complex[Tensor, "*batch N"]:
    """[x; conj x] along the last axis: the full state implied by the stored modes."""
    return torch.cat([x, x.conj()], dim=-1)


def dense_bilinear(
    dt: Float[Tensor, "H 1"], Lambda: Complex[Tensor, "H N2"], P: Complex[Tensor, "H N2"], B: Complex[Tensor, "H N2"]
) -> tuple[Complex[Tensor, "H N N"], Complex[Tensor, "H N"]]:
    """Full-state bilinear discretization: A = diag([Lambda; conj Lambda]) - p p^H,
    A_bar = (I - dt/2 A)^-1 (I + dt/2 A), B_bar = (I - dt/2 A)^-1 dt [B; conj B]."""
    p = conj_pairs(P)
    A = torch.diag_embed(conj_pairs(Lambda)) - p[:, :, None] * p.conj()[:, None, :]
    I = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    half = (dt / 2)[:, :, None].to(A.dtype)
    left = I - half * A
    A_bar = torch.linalg.solve(left, I + half * A)
    B_bar = torch.linalg.solve(left, dt.to(A.dtype) * conj_pairs(B))
    return A_bar, B_bar


def roots_of_unity(L: int, dtype: torch.dtype, device: torch.device) -> Complex[Tensor, " F"]:
    """omega_k = exp(-2 pi i k / L), k = 0..L//2 (the rfft bins), computed in float64."""
    k = torch.arange(L // 2 + 1, dtype=torch.float64, device=device)
    return torch.polar(torch.ones_like(k), -2 * math.pi * k / L).to(dtype)


def dplr_kernel(
    dt: Float[Tensor, "H 1"],
    Lambda: Complex[Tensor, "H N2"],
    P: Complex[Tensor, "H N2"],
    B: Complex[Tensor, "H N2"],
    C_tilde: Complex[Tensor, "H N2"],
    L: int,
) -> Float[Tensor, "H L"]:
    """K = irfft(K^, L): the S4 kernel of length L from C~ for length L.

    With w = dt Lambda and z = 2(1 - omega)/(1 + omega),
    K^ = 2/(1 + omega) [r_{C~B} - r_{C~P} r_{QB} / (1 + r_{QP})], Q = conj(P),
    r_cb = dt sum over both halves of c b / (z - w). The factor 2/(1 + omega) is
    folded into every Cauchy term, 2/(1 + omega) / (z - w) = 2 / (2(1 - omega) - w(1 + omega)),
    so the Nyquist bin (omega = -1, z infinite) is finite and exact instead of
    relying on rounding; with c = (1 + omega)/2 and r' = r / c:
    K^ = r'_{C~B} - c r'_{C~P} r'_{QB} / (1 + c r'_{QP}).
    """
    omega = roots_of_unity(L, Lambda.dtype, Lambda.device)
    w = (dt * Lambda)[:, :, None]
    one_minus, one_plus = 2 * (1 - omega), 1 + omega
    inv_den = 2 / (one_minus - w * one_plus)
    inv_den_conj = 2 / (one_minus - w.conj() * one_plus)
    Q = P.conj()
    v = dt * torch.stack([C_tilde * B, C_tilde * P, Q * B, Q * P])
    r = torch.einsum("khn,hnf->khf", v, inv_den) + torch.einsum("khn,hnf->khf", v.conj(), inv_den_conj)
    c = one_plus / 2
    K_hat = r[0] - c * r[1] * r[2] / (1 + c * r[3])
    return torch.fft.irfft(K_hat, n=L)


def as_complex(x: Float[Tensor, "*shape 2"]) -> Complex[Tensor, "*shape"]:
    return torch.view_as_complex(x.contiguous())


class SSMKernel(nn.Module):
    """The DPLR S4 kernel of H channels with n_ssm copies of (Lambda, P, B).

    Parameters (published names and shapes): `inv_dt` (H, 1) with dt = exp(inv_dt);
    `A_real`, `A_imag` (S, N2) with Lambda = -exp(A_real) - i A_imag, so
    Re Lambda < 0 for every parameter value (Hurwitz); `B`, `P` (1, S, N2, 2)
    with Q = conj(P) tied; `C` (1, H, N2, 2); buffer `l_kernel` (). S = n_ssm,
    or H when n_ssm is None; channel h uses copy h mod S.

    The C convention is the published one. When `l_kernel` > 0, `C` holds
    C~ = (I - A_bar^l)^T C for l = l_kernel (so a published state dict works as
    is). When `l_kernel` == 0 (fresh init) `C` holds C itself, and the first
    forward of length L overwrites it in place with C~ for L and sets
    l_kernel = L. A request longer than l_kernel doubles it (C~ <- (I + A_bar^l)^T C~)
    until it covers L. The kernel is always computed at length l_kernel and
    truncated to the L asked for, exactly as published.
    """

    def __init__(self, H: int, N: int = 64, n_ssm: int | None = None, dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        if N % 2:
            raise ValueError(f"state size N must be even (conjugate pairs); got N={N}")
        S = H if n_ssm is None else n_ssm
        if S < 1 or H % S:
            raise ValueError(f"n_ssm must divide H={H}; got n_ssm={n_ssm}")
        self.H, self.N, self.N2, self.n_ssm = H, N, N // 2, S
        Lambda, P, B = hippo_legs_nplr(N)
        log_dt = torch.rand(H, 1) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        C = torch.randn(1, H, N // 2, dtype=torch.complex64)
        self.inv_dt = nn.Parameter(log_dt)
        self.A_real = nn.Parameter(torch.log(-Lambda.real).float().repeat(S, 1))
        self.A_imag = nn.Parameter((-Lambda.imag).float().repeat(S, 1))
        self.B = nn.Parameter(torch.view_as_real(B.to(torch.complex64)).repeat(1, S, 1, 1).clone())
        self.P = nn.Parameter(torch.view_as_real(P.to(torch.complex64)).repeat(1, S, 1, 1).clone())
        self.C = nn.Parameter(torch.view_as_real(C).clone())
        self.register_buffer("l_kernel", torch.tensor(0, dtype=torch.int64))

    def ssm_parameters(
        self,
    ) -> tuple[Float[Tensor, "H 1"], Complex[Tensor, "H N2"], Complex[Tensor, "H N2"], Complex[Tensor, "H N2"], Complex[Tensor, "H N2"]]:
        """(dt, Lambda, P, B, C) broadcast to the H channels; C is C~ when l_kernel > 0."""
        copies = self.H // self.n_ssm
        dt = torch.exp(self.inv_dt)
        Lambda = torch.complex(-torch.exp(self.A_real), -self.A_imag).repeat(copies, 1)
        P = as_complex(self.P)[0].repeat(copies, 1)
        B = as_complex(self.B)[0].repeat(copies, 1)
        return dt, Lambda, P, B, as_complex(self.C)[0]

    def discretized_float64(self) -> tuple[Complex[Tensor, "H N N"], Complex[Tensor, "H N"], Complex[Tensor, "H N"]]:
        """(A_bar, B_bar, [C; conj C]) over the full state in float64; C itself, not C~."""
        dt, Lambda, P, B, C = (x.detach().to(torch.complex128 if x.is_complex() else torch.float64) for x in self.ssm_parameters())
        A_bar, B_bar = dense_bilinear(dt, Lambda, P, B)
        C_full = conj_pairs(C)
        l = int(self.l_kernel)
        if l > 0:
            I = torch.eye(self.N, dtype=A_bar.dtype, device=A_bar.device)
            C_full = torch.linalg.solve((I - torch.linalg.matrix_power(A_bar, l)).mT, C_full)
        return A_bar, B_bar, C_full

    @torch.no_grad()
    def _extend_C_tilde(self, L: int) -> None:
        """Make C hold C~ for a length >= L (see the class docstring), in float64."""
        dt, Lambda, P, B, C = (x.to(torch.complex128 if x.is_complex() else torch.float64) for x in self.ssm_parameters())
        A_bar, _ = dense_bilinear(dt, Lambda, P, B)
        I = torch.eye(self.N, dtype=A_bar.dtype, device=A_bar.device)
        C_full, l = conj_pairs(C), int(self.l_kernel)
        if l == 0:
            C_full = ((I - torch.linalg.matrix_power(A_bar, L)).mT @ C_full[..., None])[..., 0]
            l = L
        while l < L:
            C_full = ((I + torch.linalg.matrix_power(A_bar, l)).mT @ C_full[..., None])[..., 0]
            l *= 2
        self.C.copy_(torch.view_as_real(C_full[:, : self.N2].to(as_complex(self.C).dtype))[None])
        self.l_kernel.fill_(l)

    def forward(self, L: int) -> Float[Tensor, "H L"]:
        if L > int(self.l_kernel):
            self._extend_C_tilde(L)
        dt, Lambda, P, B, C_tilde = self.ssm_parameters()
        return dplr_kernel(dt, Lambda, P, B, C_tilde, int(self.l_kernel))[:, :L]

    def step_matrices(self) -> tuple[Float[Tensor, "H N N"], Float[Tensor, "H N"], Float[Tensor, "H N"]]:
        """Real form (dA, dB, dC) of the full-state recurrence, built in float64.

        With r = [Re x; Im x] for the stored half x of the state x_f = [x; conj x]
        = T r, dA = T^-1 A_bar T, dB = T^-1 B_bar, dC = T^T C (all real): then
        r' = dA r + dB u and y = dC . r' equal x' = A_bar x + B_bar u, y = C^T x'.
        """
        A_bar, B_bar, C_full = self.discretized_float64()
        N2 = self.N2
        I = torch.eye(N2, dtype=A_bar.dtype, device=A_bar.device)
        T = torch.cat([torch.cat([I, 1j * I], 1), torch.cat([I, -1j * I], 1)], 0)
        T_inv = 0.5 * torch.cat([torch.cat([I, I], 1), torch.cat([-1j * I, 1j * I], 1)], 0)
        dtype = self.inv_dt.dtype
        dA = (T_inv @ A_bar @ T).real.to(dtype)
        dB = (B_bar @ T_inv.mT).real.to(dtype)
        dC = (C_full @ T).real.to(dtype)
        return dA, dB, dC


def ssm_step(
    state: Float[Tensor, "B H N"],
    u: Float[Tensor, "B H"],
    dA: Float[Tensor, "H N N"],
    dB: Float[Tensor, "H N"],
    dC: Float[Tensor, "H N"],
) -> tuple[Float[Tensor, "B H"], Float[Tensor, "B H N"]]:
    """One recurrence step: x' = dA x + dB u, y = dC . x'."""
    state = torch.einsum("hmn,bhn->bhm", dA, state) + dB * u[..., None]
    return (state * dC).sum(-1), state


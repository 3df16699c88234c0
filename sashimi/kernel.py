"""The S4 convolution kernel: DPLR state matrix, HiPPO-LegS init, Cauchy + Woodbury kernel.

Parameters are named and shaped as the published implementation's
(`SSMKernelDPLR` of state-spaces/s4), so its state dict loads as it is.
Complex parameters are stored as real views with a trailing axis of 2.
"""

import contextlib
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


def dplr_kernel_plain(
    dt: Float[Tensor, "H 1"],
    Lambda: Complex[Tensor, "H N2"],
    P: Complex[Tensor, "H N2"],
    B: Complex[Tensor, "H N2"],
    C_tilde: Complex[Tensor, "H N2"],
    L: int,
) -> Float[Tensor, "H L"]:
    """K = irfft(K^, L): the S4 kernel of length L from C~ for length L (plain version, the oracle of `dplr_kernel`).

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


def half_angle_tables(L: int, dtype: torch.dtype, device: torch.device) -> tuple[Float[Tensor, " F"], Float[Tensor, " F"]]:
    """(sin(theta/2), cos(theta/2)) at the rfft bins theta_k = 2 pi k / L, k = 0..L//2, computed in float64."""
    k = torch.arange(L // 2 + 1, dtype=torch.float64, device=device)
    half = math.pi * k / L
    return torch.sin(half).to(dtype), torch.cos(half).to(dtype)


def cauchy_pairs_plain(
    W: Float[Tensor, "H K N2"], R4: Float[Tensor, "H N2"], M: Float[Tensor, "H N2"], s: Float[Tensor, " F"], c: Float[Tensor, " F"]
) -> Float[Tensor, "H K 2 F"]:
    """Re and Im of X_k(f) = sum_n W_kn / Q'_n(f), Q'_n(f) = M_n c_f^2 - 4 s_f^2 - i R4_n s_f c_f.

    The whole (H, N2, F) array at once; plain autograd. The oracle of `cauchy_pairs`.
    """
    Qr = M[..., None] * (c * c) - 4 * s * s
    Qi = R4[..., None] * (s * c)
    d = Qr * Qr + Qi * Qi
    return torch.stack([W @ (Qr / d), W @ (Qi / d)], dim=-2)


def _inverse_Q(R4: Tensor, M: Tensor, c2: Tensor, sc: Tensor, m4s2: Tensor) -> tuple[Tensor, Tensor]:
    """(Re, Im) of 1 / Q' on one chunk of frequencies, as two contiguous (H, N2, Fc) arrays."""
    Qr = torch.addcmul(m4s2, M[..., None], c2)
    Qi = R4[..., None] * sc
    d = torch.addcmul(Qr * Qr, Qi, Qi).reciprocal_()
    return Qr.mul_(d), Qi.mul_(d)


def _chunk_size(H: int, N2: int, F: int) -> int:
    """Frequencies per chunk: about 2^19 elements per (H, N2, Fc) array, so a chunk stays in cache."""
    return max(16, min(F, (1 << 19) // max(1, H * N2)))


def _woodbury(XY: Tensor, s: Tensor, c: Tensor) -> tuple[Tensor, ...]:
    """rho_k = i s X_k + (c/2) Y_k and K^ = conj(phi) [rho_0 - c rho_1 rho_2 / (1 + c rho_3)] on one chunk."""
    X = torch.complex(XY[:, :4, 0], XY[:, :4, 1])
    Y = torch.complex(XY[:, 4:, 0], XY[:, 4:, 1])
    rho = (1j * s) * X + (c / 2) * Y
    D = 1 + c * rho[:, 3]
    t = rho[:, 1] * rho[:, 2] / D
    K_hat = torch.complex(c, s) * (rho[:, 0] - c * t)
    return K_hat, rho, D, t


class _DPLRResponse(torch.autograd.Function):
    """K^ (as real pairs, (H, F, 2)) from the pair coefficients W (H, 8, N2), R4 = 4 Re w and
    M = |w|^2, chunk by chunk over frequencies. Backward recomputes 1/Q' and the Woodbury terms
    chunk by chunk: nothing of size (H, N2, F) or (H, 4, F) is stored, only the inputs.

    Gradients (g = dL/dRe + i dL/dIm): g_rho0 = phi g, g_t = -c phi g, g_rho1 = conj(rho_2/D) g_t,
    g_rho2 = conj(rho_1/D) g_t, g_rho3 = -c conj(t/D) g_t; g_X = -i s g_rho, g_Y = (c/2) g_rho.
    Cauchy part, with q = 1/Q' and g_XY the real pairs: dq_n = sum_k W_kn g_k and
    dL/dQ' = -conj(q)^2 dq, so dM_n = -Re sum_k W_kn sum_f conj(q_nf)^2 g_kf c_f^2 and
    dR4_n = Im sum_k W_kn sum_f conj(q_nf)^2 g_kf s_f c_f: two small GEMMs per chunk.
    """

    @staticmethod
    def forward(ctx, W, R4, M, s, c):
        ctx.save_for_backward(W, R4, M, s, c)
        return torch.view_as_real(_woodbury(_cauchy_pairs_chunked(W, R4, M, s, c), s, c)[0])

    @staticmethod
    def backward(ctx, dout):
        W, R4, M, s, c = ctx.saved_tensors
        H, K, N2 = W.shape
        F = s.shape[0]
        # Woodbury part, over all frequencies at once (it is elementwise in f)
        _, rho, D, t = _woodbury(_cauchy_pairs_chunked(W, R4, M, s, c), s, c)
        g = torch.view_as_complex(dout.contiguous())
        g_rho0 = torch.complex(c, -s) * g
        g_t = -c * g_rho0
        g_rho = torch.stack([g_rho0, (rho[:, 2] / D).conj() * g_t, (rho[:, 1] / D).conj() * g_t, (-c) * (t / D).conj() * g_t], dim=1)
        g_XY = torch.cat([(-1j * s) * g_rho, (c / 2) * g_rho], dim=1)
        gr, gi = g_XY.real.contiguous(), g_XY.imag.contiguous()
        # Cauchy part: conj(q)^2 = G_r - i G_i with G_r = qr^2 - qi^2, G_i = 2 qr qi
        c2, sc, m4s2 = c * c, s * c, -4 * s * s
        Dr = torch.cat([gr * c2, gi * sc], dim=1)
        Di = torch.cat([gi * (2 * c2), gr * (-2 * sc)], dim=1)
        dW = torch.zeros_like(W)
        T = W.new_zeros(H, N2, 2 * K)
        chunk = _chunk_size(H, N2, F)
        for f0 in range(0, F, chunk):
            f1 = min(F, f0 + chunk)
            qr, qi = _inverse_Q(R4, M, c2[f0:f1], sc[f0:f1], m4s2[f0:f1])
            dW.baddbmm_(gr[..., f0:f1], qr.mT).baddbmm_(gi[..., f0:f1], qi.mT)
            T.baddbmm_(torch.addcmul(qr * qr, qi, qi, value=-1), Dr[..., f0:f1].mT).baddbmm_(qr.mul_(qi), Di[..., f0:f1].mT)
        Wt = W.mT
        dM = -(Wt * T[..., :K]).sum(-1)
        dR4 = (Wt * T[..., K:]).sum(-1)
        return dW, dR4, dM, None, None


def _cauchy_pairs_chunked(W: Tensor, R4: Tensor, M: Tensor, s: Tensor, c: Tensor) -> Tensor:
    """`cauchy_pairs_plain` (no autograd), one cache-sized chunk of frequencies at a time."""
    H, K, N2 = W.shape
    F = s.shape[0]
    chunk = _chunk_size(H, N2, F)
    c2, sc, m4s2 = c * c, s * c, -4 * s * s
    out = W.new_empty(H, K, 2, F)
    for f0 in range(0, F, chunk):
        f1 = min(F, f0 + chunk)
        qr, qi = _inverse_Q(R4, M, c2[f0:f1], sc[f0:f1], m4s2[f0:f1])
        out[:, :, 0, f0:f1] = torch.bmm(W, qr)
        out[:, :, 1, f0:f1] = torch.bmm(W, qi)
    return out


def dplr_response(
    W: Float[Tensor, "H K N2"], R4: Float[Tensor, "H N2"], M: Float[Tensor, "H N2"], s: Float[Tensor, " F"], c: Float[Tensor, " F"]
) -> Complex[Tensor, "H F"]:
    """K^ from `cauchy_pairs_plain` followed by the Woodbury correction, chunked over frequencies,
    recomputing in backward instead of storing (see `_DPLRResponse`)."""
    return torch.view_as_complex(_DPLRResponse.apply(W, R4, M, s, c))


def dplr_response_plain(
    W: Float[Tensor, "H K N2"], R4: Float[Tensor, "H N2"], M: Float[Tensor, "H N2"], s: Float[Tensor, " F"], c: Float[Tensor, " F"]
) -> Complex[Tensor, "H F"]:
    """`dplr_response` in one piece with plain autograd (its oracle)."""
    return _woodbury(cauchy_pairs_plain(W, R4, M, s, c), s, c)[0]


def dplr_kernel(
    dt: Float[Tensor, "H 1"],
    Lambda: Complex[Tensor, "H N2"],
    P: Complex[Tensor, "H N2"],
    B: Complex[Tensor, "H N2"],
    C_tilde: Complex[Tensor, "H N2"],
    L: int,
) -> Float[Tensor, "H L"]:
    """K = irfft(K^, L), the same function as `dplr_kernel_plain`, with each conjugate pair summed
    as one real-coefficient term and the Cauchy sums chunked (`dplr_response`).

    With a = 2(1 - omega), b = 1 + omega and the pair (w, conj w):
    2v/(a - w b) + 2 conj(v)/(a - conj(w) b) = [4 Re(v) a - 4 Re(v conj w) b] / Q,
    Q = (a - w b)(a - conj(w) b) = a^2 - 2 Re(w) a b + |w|^2 b^2. On the unit circle
    omega = e^{-i theta}: a = 4 i s phi, b = 2 c phi with s, c = sin, cos(theta/2) and
    phi = e^{-i theta/2}, so Q = 4 phi^2 Q', Q' = |w|^2 c^2 - 4 s^2 - 4 i Re(w) s c, and
    r_k = conj(phi) rho_k, rho_k = i s X_k + (c/2) Y_k, with X_k = sum_n 4 Re(v_kn) / Q'_n and
    Y_k = -sum_n 4 Re(v_kn conj w_n) / Q'_n. Woodbury with (1 + omega)/2 = c phi:
    K^ = conj(phi) [rho_0 - c rho_1 rho_2 / (1 + c rho_3)]. No (H, N2, F) complex array, one
    reciprocal per pair instead of two, and the Nyquist bin (c = 0) is exact.
    """
    s, c = half_angle_tables(L, dt.dtype, dt.device)
    w = dt * Lambda
    Q = P.conj()
    v = dt * torch.stack([C_tilde * B, C_tilde * P, Q * B, Q * P])
    W = torch.cat([4 * v.real, -4 * (v * w.conj()).real]).transpose(0, 1).contiguous()
    return torch.fft.irfft(dplr_response(W, 4 * w.real, w.real.square() + w.imag.square(), s, c), n=L)


_CACHE = {"enabled": True}


@contextlib.contextmanager
def kernel_cache(enabled: bool):
    """Switch the eval-time kernel cache of every SSMKernel on or off inside the block (benchmarks
    and tests use it to measure or check the uncached path)."""
    before = _CACHE["enabled"]
    _CACHE["enabled"] = enabled
    try:
        yield
    finally:
        _CACHE["enabled"] = before


def cache_allowed(module: nn.Module) -> bool:
    """A kernel may be cached only when no graph is recorded through it: caching is for
    evaluation and generation, never for a training step with gradients."""
    if not _CACHE["enabled"]:
        return False
    return not (torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters()))


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
        self._cached: tuple | None = None

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

    def _cache_key(self, L: int) -> tuple:
        """What the kernel depends on: the very tensors (identity), their in-place version
        counters, storage, dtype and device, and L. Any optimizer step, load_state_dict,
        in-place edit, `.to()` or functional_call changes it."""
        tensors = (self.inv_dt, self.A_real, self.A_imag, self.B, self.P, self.C, self.l_kernel)
        try:
            return (L, tuple((id(t), t._version, t.data_ptr(), t.dtype, t.device) for t in tensors)), tensors
        except RuntimeError:  # inference tensors keep no version counter: never cache them
            return (L, object()), tensors

    def forward(self, L: int) -> Float[Tensor, "H L"]:
        """The kernel of length L. Without autograd (evaluation, generation) it is cached and
        reused until a parameter changes (see `_cache_key`); with autograd never."""
        if L > int(self.l_kernel):
            self._extend_C_tilde(L)
        cacheable = cache_allowed(self)
        if cacheable and self._cached is not None:
            (key, _tensors), K = self._cached
            if key == self._cache_key(L)[0]:
                return K
        dt, Lambda, P, B, C_tilde = self.ssm_parameters()
        K = dplr_kernel(dt, Lambda, P, B, C_tilde, int(self.l_kernel))[:, :L]
        # holding the tensors keeps their ids from being reused by new tensors
        self._cached = (self._cache_key(L), K) if cacheable else None
        return K

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

    def linear_step_coefficients(self) -> tuple[Complex[Tensor, "H N2"], Float[Tensor, "H N"], Float[Tensor, "H N"], Float[Tensor, "H N"], Float[Tensor, "H N"]]:
        """(a, b, g, m, c) of the O(N) DPLR recurrence over the half state x (N2 modes), built
        in float64 and cast to the parameter dtype (b, g, m, c as interleaved real pairs, m and c
        conjugated and c doubled so that `dplr_step` needs only real dot products):

            x' = a x + b u - g Re(m . x),   y = 2 Re(c . x')

        From the bilinear step (1 - dA) x' = (1 + dA) x + dt B u, d = dt/2, with the half-state
        A x = Lambda x - 2 P Re(P^H x): E = 1/(1 - d Lambda), a = E (1 + d Lambda), g = 2 d E P,
        b0 = E dt B, gamma = Re(P^H g), k = 1/(1 + gamma) (Woodbury for the rank-1 part),
        m = (1 - k gamma) conj(P) + k conj(P) a, b = b0 - g k Re(P^H b0); c is C itself
        (C~ solved back, as in `discretized_float64`).
        """
        dt, Lambda, P, B, _ = (x.detach().to(torch.complex128 if x.is_complex() else torch.float64) for x in self.ssm_parameters())
        _, _, C_full = self.discretized_float64()
        d = dt / 2
        E = 1 / (1 - d * Lambda)
        a = E * (1 + d * Lambda)
        g = 2 * d * E * P
        b0 = E * dt * B
        gamma = (P.conj() * g).sum(-1, keepdim=True).real
        k = 1 / (1 + gamma)
        m = (1 - k * gamma) * P.conj() + k * P.conj() * a
        b = b0 - g * (k * (P.conj() * b0).sum(-1, keepdim=True).real)
        dtype = self.inv_dt.dtype
        pairs = [torch.view_as_real(x).flatten(-2).to(dtype) for x in (b, g, m.conj().resolve_conj(), (2 * C_full[:, : self.N2]).conj().resolve_conj())]
        return (a.to(torch.complex64 if dtype == torch.float32 else torch.complex128), *pairs)


def dplr_step(
    state: Float[Tensor, "B H N"],
    u: Float[Tensor, "B H"],
    a: Complex[Tensor, "H N2"],
    b: Float[Tensor, "H N"],
    g: Float[Tensor, "H N"],
    m: Float[Tensor, "H N"],
    c: Float[Tensor, "H N"],
) -> tuple[Float[Tensor, "B H"], Float[Tensor, "B H N"]]:
    """One O(N) recurrence step x' = a x + b u - g Re(m . x), y = 2 Re(c . x') (see
    `SSMKernel.linear_step_coefficients`), on the half state x stored as interleaved (re, im)
    pairs. b, g are those pairs; m, c are given as the real vectors with Re(m . x) = m . x_pairs
    (that is, (Re m, -Im m) interleaved; c likewise and doubled)."""
    Bsz, H, N = state.shape
    mu = torch.linalg.vecdot(state, m)
    x = torch.view_as_real(a * torch.view_as_complex(state.view(Bsz, H, N // 2, 2))).view(Bsz, H, N)
    x = torch.addcmul(x, b, u[..., None]).sub_(g * mu[..., None])
    return torch.linalg.vecdot(x, c), x


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


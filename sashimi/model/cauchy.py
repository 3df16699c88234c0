"""The S4 convolution kernel from DPLR parameters: Cauchy sums and the Woodbury correction
(docs/DESIGN.md, "The convolution kernel: Cauchy sums and Woodbury").

`dplr_kernel_plain` is the plain oracle (complex Cauchy sums over both halves, plain autograd);
`dplr_kernel` is the fast form (conjugate pairs as one real-coefficient term, chunked over
frequencies, recomputing backward; docs/DESIGN.md, "Real-pair evaluation and chunking").
"""

import math

import torch

from sashimi.core.shapes import Complex, Float, Tensor
from sashimi.model import native_kernel


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


def half_angle_tables(
    L: int, dtype: torch.dtype, device: torch.device
) -> tuple[Float[Tensor, " F"], Float[Tensor, " F"]]:
    """(sin(theta/2), cos(theta/2)) at the rfft bins theta_k = 2 pi k / L, k = 0..L//2, computed in float64."""
    k = torch.arange(L // 2 + 1, dtype=torch.float64, device=device)
    half = math.pi * k / L
    return torch.sin(half).to(dtype), torch.cos(half).to(dtype)


def cauchy_pairs_plain(
    W: Float[Tensor, "H K N2"],
    R4: Float[Tensor, "H N2"],
    M: Float[Tensor, "H N2"],
    s: Float[Tensor, " F"],
    c: Float[Tensor, " F"],
) -> Float[Tensor, "H K 2 F"]:
    """Re and Im of X_k(f) = sum_n W_kn / Q'_n(f), Q'_n(f) = M_n c_f^2 - 4 s_f^2 - i R4_n s_f c_f.

    The whole (H, N2, F) array at once; plain autograd. The oracle of `cauchy_pairs`.
    """
    Qr, Qi, d = _plain_Q(R4, M, s, c)
    return torch.stack([W @ (Qr / d), W @ (Qi / d)], dim=-2)


def _plain_Q(R4: Tensor, M: Tensor, s: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(Re Q', -Im Q', |Q'|^2) on the whole (H, N2, F) grid, plainly: the oracles' terms."""
    Qr = M[..., None] * (c * c) - 4 * s * s
    Qi = R4[..., None] * (s * c)
    return Qr, Qi, Qr * Qr + Qi * Qi


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
        native = native_kernel.response(W, R4, M, s, c)  # the same, in one native loop, where it runs
        return (
            torch.view_as_real(_woodbury(_cauchy_pairs_chunked(W, R4, M, s, c), s, c)[0]) if native is None else native
        )

    @staticmethod
    def backward(ctx, dout):
        W, R4, M, s, c = ctx.saved_tensors
        (H, K, N2), F = W.shape, s.shape[0]
        # Woodbury part, over all frequencies at once (it is elementwise in f)
        sums = native_kernel.pair_sums(W, R4, M, s, c)
        _, rho, D, t = _woodbury(_cauchy_pairs_chunked(W, R4, M, s, c) if sums is None else sums, s, c)
        g = torch.view_as_complex(dout.contiguous())
        g_rho0 = torch.complex(c, -s) * g
        g_t = -c * g_rho0
        g_rho = torch.stack(
            [g_rho0, (rho[:, 2] / D).conj() * g_t, (rho[:, 1] / D).conj() * g_t, (-c) * (t / D).conj() * g_t], dim=1
        )
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
            T.baddbmm_(torch.addcmul(qr * qr, qi, qi, value=-1), Dr[..., f0:f1].mT).baddbmm_(
                qr.mul_(qi), Di[..., f0:f1].mT
            )  # mutate: skip Dr and Di are real: .mH is .mT
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
    W: Float[Tensor, "H K N2"],
    R4: Float[Tensor, "H N2"],
    M: Float[Tensor, "H N2"],
    s: Float[Tensor, " F"],
    c: Float[Tensor, " F"],
) -> Complex[Tensor, "H F"]:
    """K^ from `cauchy_pairs_plain` followed by the Woodbury correction, chunked over frequencies,
    recomputing in backward instead of storing (see `_DPLRResponse`)."""
    return torch.view_as_complex(_DPLRResponse.apply(W, R4, M, s, c))


def dplr_response_plain(
    W: Float[Tensor, "H K N2"],
    R4: Float[Tensor, "H N2"],
    M: Float[Tensor, "H N2"],
    s: Float[Tensor, " F"],
    c: Float[Tensor, " F"],
) -> Complex[Tensor, "H F"]:
    """`dplr_response` in one piece with plain autograd (its oracle)."""
    return _woodbury(cauchy_pairs_plain(W, R4, M, s, c), s, c)[0]


def woodbury_condition(
    W: Float[Tensor, "H K N2"], R4: Float[Tensor, "H N2"], M: Float[Tensor, "H N2"], L: int
) -> float:
    """How much K^ may amplify rounding in its sums, for the tolerance rows that compare two orders
    of summation: max over channels and frequencies of (1 + |c rho_3|) / |1 + c rho_3|, the relative
    error of the Woodbury denominator per relative error of rho_3 (large near its poles); computed
    in float64 with the plain sums; at least 1."""
    s, c = half_angle_tables(L, torch.float64, W.device)
    W, R4, M = (t.detach().double() for t in (W, R4, M))
    _, rho, D, _ = _woodbury(cauchy_pairs_plain(W, R4, M, s, c), s, c)
    return float(max(1.0, ((1 + (c * rho[:, 3]).abs()) / D.abs()).max()))


def gradient_sums(
    W: Float[Tensor, "H K N2"],
    R4: Float[Tensor, "H N2"],
    M: Float[Tensor, "H N2"],
    L: int,
    weight: Float[Tensor, "H F 2"],
) -> list[tuple[Tensor, Tensor]]:
    """The gradients of sum(weight * K^) (K^ as real pairs) with respect to W, R4 and M, each as
    (the sum over frequencies and pair terms, the same sum of the terms' magnitudes), in float64
    with the plain sums. With a + ib = 1 / Q'_n(f) and g = d/dX_k(f) as real pairs (g0, g1):
    dW_kn = sum_f g0 a + g1 b, and dR4_n, dM_n = sum_k W_kn sum_f g0 da + g1 db, with
    da/dM = c^2 (Qi^2 - Qr^2) / d^2, db/dM = -2 Qr Qi c^2 / d^2 and the same for R4 with
    sc in place of c^2 and the roles of Qr, Qi swapped (d = |Q'|^2)."""
    s, c = half_angle_tables(L, torch.float64, W.device)
    W, R4, M, weight = (t.detach().double() for t in (W, R4, M, weight))
    XY = cauchy_pairs_plain(W, R4, M, s, c).requires_grad_(True)
    (g,) = torch.autograd.grad((torch.view_as_real(_woodbury(XY, s, c)[0]) * weight).sum(), XY)
    g0, g1 = g[:, :, 0, None, :], g[:, :, 1, None, :]  # (H, K, 1, F)
    Qr, Qi, d = _plain_Q(R4, M, s, c)
    a, b = Qr / d, Qi / d  # (H, N2, F)
    da_dM, db_dM = c * c * (Qi * Qi - Qr * Qr) / d**2, -2 * Qr * Qi * c * c / d**2
    da_dR4, db_dR4 = -2 * Qr * Qi * s * c / d**2, s * c * (Qr * Qr - Qi * Qi) / d**2

    terms = g0 * a[:, None] + g1 * b[:, None]  # dW's terms: (H, K, N2, F)
    out = [(terms.sum(-1), terms.abs().sum(-1))]
    for da, db in ((da_dR4, db_dR4), (da_dM, db_dM)):
        terms = W[..., None] * (g0 * da[:, None] + g1 * db[:, None])  # (H, K, N2, F), summed over K and F
        out.append((terms.sum((1, 3)), terms.abs().sum((1, 3))))
    return out


def gradient_conditions(
    W: Float[Tensor, "H K N2"],
    R4: Float[Tensor, "H N2"],
    M: Float[Tensor, "H N2"],
    L: int,
    weight: Float[Tensor, "H F 2"],
) -> list[float]:
    """For each of the gradients with respect to W, R4 and M (`gradient_sums`): how much cancellation
    in its sums amplifies rounding relative to its largest entry, max(sum of magnitudes) / max|value|,
    times the Woodbury condition its upstream gradient carries; at least 1."""
    woodbury = woodbury_condition(W, R4, M, L)
    return [
        max(1.0, float(magnitude.max() / signed.abs().max()) * woodbury) if signed.abs().max() > 0 else woodbury
        for signed, magnitude in gradient_sums(W, R4, M, L, weight)
    ]


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
    return torch.fft.irfft(dplr_response(*pair_coefficients(dt, Lambda, P, B, C_tilde), s, c), n=L)


def pair_coefficients(
    dt: Float[Tensor, "H 1"],
    Lambda: Complex[Tensor, "H N2"],
    P: Complex[Tensor, "H N2"],
    B: Complex[Tensor, "H N2"],
    C_tilde: Complex[Tensor, "H N2"],
) -> tuple[Float[Tensor, "H 8 N2"], Float[Tensor, "H N2"], Float[Tensor, "H N2"]]:
    """(W, R4, M) of `dplr_response` for the SSM (the pair terms of `dplr_kernel`'s derivation)."""
    w = dt * Lambda
    Q = P.conj()
    v = dt * torch.stack([C_tilde * B, C_tilde * P, Q * B, Q * P])
    W = torch.cat([4 * v.real, -4 * (v * w.conj()).real]).transpose(0, 1).contiguous()
    return W, 4 * w.real, w.real.square() + w.imag.square()

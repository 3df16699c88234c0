"""The DPLR state matrix over the full state and its bilinear discretization (docs/DESIGN.md, "Bilinear
discretization").

Complex parameters are stored as real views with a trailing axis of 2 (the published layout).
"""

import torch

from sashimi.core.shapes import Complex, Float, Tensor


def as_complex(x: Float[Tensor, "*shape 2"]) -> Complex[Tensor, "*shape"]:
    return torch.view_as_complex(x.contiguous())


def conj_pairs(x: Complex[Tensor, "*batch N2"]) -> Complex[Tensor, "*batch N"]:
    """[x; conj x] along the last axis: the full state implied by the stored modes."""
    return torch.cat([x, x.conj()], dim=-1)


def dense_bilinear(
    dt: Float[Tensor, "H 1"], Lambda: Complex[Tensor, "H N2"], P: Complex[Tensor, "H N2"], B: Complex[Tensor, "H N2"]
) -> tuple[Complex[Tensor, "H N N"], Complex[Tensor, "H N"]]:
    """Full-state bilinear discretization: A = diag([Lambda; conj Lambda]) - p p^H,
    A_bar = (I - dt/2 A)^-1 (I + dt/2 A), B_bar = (I - dt/2 A)^-1 dt [B; conj B].

    The inverse in closed form (Sherman-Morrison: A is diagonal minus rank one), O(N^2) per channel
    where a solve costs O(N^3) and most of `setup_step`: with h = dt/2 and E = diag(1 / (1 - h lambda)),
    M = (I - h A)^-1 = E - h E p p^H E / (1 + h p^H E p), whose denominator has real part above 1
    for a Hurwitz Lambda; then A_bar = M (2 I - (I - h A)) = 2 M - I and B_bar = M dt [B; conj B]."""
    lam, p = conj_pairs(Lambda), conj_pairs(P)
    h = (dt / 2).to(lam.dtype)
    e = 1 / (1 - h * lam)
    ep, pe = e * p, p.conj() * e
    scale = h / (1 + h * (pe * p).sum(-1, keepdim=True))
    M = torch.diag_embed(e) - scale[..., None] * ep[:, :, None] * pe[:, None, :]
    I = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)  # mutate: skip M is square: shape[-1] is shape[-2]
    A_bar = 2 * M - I
    B_bar = (M @ (dt.to(M.dtype) * conj_pairs(B))[..., None])[..., 0]
    return A_bar, B_bar


def real_bilinear_A(
    dt: Float[Tensor, "H 1"], Lambda: Complex[Tensor, "H N2"], P: Complex[Tensor, "H N2"]
) -> Float[Tensor, "H N N"]:
    """`dense_bilinear`'s A_bar in the real basis r = [Re x; Im x] of the stored half x (the full state
    is T r, T = [[I, iI], [I, -iI]]): T^-1 A_bar T, real, built in O(N^2) from the same closed form.
    Powers and solves of a real matrix cost a quarter of a complex one's.

    With e = 1 / (1 - h lambda) (h = dt/2) and M = (I - h A)^-1 = diag([e; conj e]) - s u w^T, where
    u = [e p; conj(e p)], w = [conj(p) e; p conj(e)] and s = h / (1 + h p^H E p) (real: p^H E p over the
    full state is 2 Re(sum conj(p) e p)): T^-1 diag T = [[Re e, -Im e], [Im e, Re e]] (diagonal blocks),
    T^-1 u = [Re(e p); Im(e p)], w^T T = [2 Re(conj(p) e), -2 Im(conj(p) e)]; A_bar = 2 M - I."""
    h = dt / 2
    e = 1 / (1 - h * Lambda)
    ep, pe = e * P, P.conj() * e
    s = h / (1 + 2 * h * (pe * P).sum(-1, keepdim=True).real)
    diagonal = torch.cat(
        [
            torch.cat([torch.diag_embed(e.real), torch.diag_embed(-e.imag)], -1),
            torch.cat([torch.diag_embed(e.imag), torch.diag_embed(e.real)], -1),
        ],
        -2,
    )
    u = torch.cat([ep.real, ep.imag], -1)
    w = torch.cat([2 * pe.real, -2 * pe.imag], -1)
    M = diagonal - s[..., None] * u[:, :, None] * w[:, None, :]
    return 2 * M - torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)


def real_pairs(C: Complex[Tensor, "H N2"]) -> Float[Tensor, "H N"]:
    """T^T [C; conj C] = [2 Re C; -2 Im C]: an output vector in `real_bilinear_A`'s basis, where
    (I - A_bar^l)^T acting on [C; conj C] becomes the real (I - dA^l)^T acting on these."""
    return torch.cat([2 * C.real, -2 * C.imag], -1)


def from_real_pairs(z: Float[Tensor, "H N"]) -> Complex[Tensor, "H N2"]:
    """The inverse of `real_pairs`: C = (z_re - i z_im) / 2."""
    half = z.shape[-1] // 2
    return torch.complex(z[..., :half], -z[..., half:]) / 2

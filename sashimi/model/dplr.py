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
    A_bar = (I - dt/2 A)^-1 (I + dt/2 A), B_bar = (I - dt/2 A)^-1 dt [B; conj B]."""
    p = conj_pairs(P)
    A = torch.diag_embed(conj_pairs(Lambda)) - p[:, :, None] * p.conj()[:, None, :]
    I = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    half = (dt / 2)[:, :, None].to(A.dtype)
    left = I - half * A
    A_bar = torch.linalg.solve(left, I + half * A)
    B_bar = torch.linalg.solve(left, dt.to(A.dtype) * conj_pairs(B))
    return A_bar, B_bar

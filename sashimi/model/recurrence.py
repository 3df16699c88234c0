"""Step mode: the S4 recurrence, built once from the kernel's parameters in float64
(docs/DESIGN.md, "The recurrence (step mode)").

`linear_step_coefficients` + `dplr_step` is the O(N) recurrence generation uses;
`step_matrices` + `ssm_step` is the dense real (H, N, N) form, kept as its plain oracle.
"""

import torch

from sashimi.core.shapes import Complex, Float, Tensor
from sashimi.model.kernel import SSMKernel


def step_matrices(kernel: SSMKernel) -> tuple[Float[Tensor, "H N N"], Float[Tensor, "H N"], Float[Tensor, "H N"]]:
    """Real form (dA, dB, dC) of the full-state recurrence, built in float64.

    With r = [Re x; Im x] for the stored half x of the state x_f = [x; conj x]
    = T r, dA = T^-1 A_bar T, dB = T^-1 B_bar, dC = T^T C (all real): then
    r' = dA r + dB u and y = dC . r' equal x' = A_bar x + B_bar u, y = C^T x'.
    """
    A_bar, B_bar, C_full = kernel.discretized_float64()
    N2 = kernel.N2
    I = torch.eye(N2, dtype=A_bar.dtype, device=A_bar.device)
    T = torch.cat([torch.cat([I, 1j * I], 1), torch.cat([I, -1j * I], 1)], 0)
    T_inv = 0.5 * torch.cat([torch.cat([I, I], 1), torch.cat([-1j * I, 1j * I], 1)], 0)
    dtype = kernel.inv_dt.dtype
    dA = (T_inv @ A_bar @ T).real.to(dtype)
    dB = (B_bar @ T_inv.mT).real.to(dtype)
    dC = (C_full @ T).real.to(dtype)
    return dA, dB, dC


def linear_step_coefficients(
    kernel: SSMKernel,
) -> tuple[
    Complex[Tensor, "H N2"], Float[Tensor, "H N"], Float[Tensor, "H N"], Float[Tensor, "H N"], Float[Tensor, "H N"]
]:
    """(a, b, g, m, c) of the O(N) DPLR recurrence over the half state x (N2 modes), built
    in float64 and cast to the parameter dtype (b, g, m, c as interleaved real pairs, m and c
    conjugated and c doubled so that `dplr_step` needs only real dot products):

        x' = a x + b u - g Re(m . x),   y = 2 Re(c . x')

    From the bilinear step (1 - dA) x' = (1 + dA) x + dt B u, d = dt/2, with the half-state
    A x = Lambda x - 2 P Re(P^H x): E = 1/(1 - d Lambda), a = E (1 + d Lambda), g = 2 d E P,
    b0 = E dt B, gamma = Re(P^H g), k = 1/(1 + gamma) (Woodbury for the rank-1 part),
    m = (1 - k gamma) conj(P) + k conj(P) a, b = b0 - g k Re(P^H b0); c is C itself
    (C~ solved back by `SSMKernel.C_float64`, in the real basis; the dense form's
    `discretized_float64` solves it in the complex one, independently).
    """
    dt, Lambda, P, B, _ = (
        x.detach().to(torch.complex128 if x.is_complex() else torch.float64) for x in kernel.ssm_parameters()
    )
    C = kernel.C_float64()
    d = dt / 2
    E = 1 / (1 - d * Lambda)
    a = E * (1 + d * Lambda)
    g = 2 * d * E * P
    b0 = E * dt * B
    gamma = (P.conj() * g).sum(-1, keepdim=True).real
    k = 1 / (1 + gamma)
    m = (1 - k * gamma) * P.conj() + k * P.conj() * a
    b = b0 - g * (k * (P.conj() * b0).sum(-1, keepdim=True).real)
    dtype = kernel.inv_dt.dtype
    pairs = [
        torch.view_as_real(x).flatten(-2).to(dtype)
        for x in (b, g, m.conj().resolve_conj(), (2 * C).conj().resolve_conj())
    ]
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
    `linear_step_coefficients`), on the half state x stored as interleaved (re, im)
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

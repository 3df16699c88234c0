"""`SSMKernel`: the S4 kernel module, its parameters, C~ and its length, and the eval-time cache.

Parameters are named and shaped as the published implementation's (`SSMKernelDPLR` of
state-spaces/s4), so its state dict loads as it is (docs/DESIGN.md, "Standalone state-dict layout").
"""

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from sashimi.core.shapes import Complex, Float, Tensor
from sashimi.model.cauchy import dplr_kernel
from sashimi.model.dplr import as_complex, conj_pairs, dense_bilinear, from_real_pairs, real_bilinear_A, real_pairs
from sashimi.model.hippo import hippo_legs_nplr

# a switch, not a setting: benchmarks and tests turn it off to measure or check the uncached path
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


class SSMKernel(nn.Module):
    """The DPLR S4 kernel of H channels with n_ssm copies of (Lambda, P, B).

    Parameters (published names and shapes): `inv_dt` (H, 1) with dt = exp(inv_dt) (the
    standalone model and the v3 pipeline) or softplus(inv_dt) (`dt_transform="softplus"`, the v4
    pipeline's default);
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

    def __init__(
        self,
        H: int,
        N: int = 64,
        n_ssm: int | None = None,
        dt_range: tuple[float, float] = (1e-3, 1e-1),
        dt_transform: str = "exp",
    ):
        """`dt_range`: (dt_min, dt_max), the published init's log-uniform range of Delta."""
        super().__init__()
        if dt_transform not in ("exp", "softplus"):
            raise ValueError(f"dt_transform must be 'exp' or 'softplus'; got {dt_transform!r}")
        if N % 2:
            raise ValueError(f"state size N must be even (conjugate pairs); got N={N}")
        S = H if n_ssm is None else n_ssm
        if S < 1 or H % S:
            raise ValueError(f"n_ssm must divide H={H}; got n_ssm={n_ssm}")
        self.H, self.N, self.N2, self.n_ssm, self.dt_transform = H, N, N // 2, S, dt_transform
        Lambda, P, B = hippo_legs_nplr(N)
        dt_min, dt_max = dt_range
        log_dt = torch.rand(H, 1) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        if dt_transform == "softplus":  # the inverse softplus, so that Delta starts in the same range
            log_dt = log_dt.exp().expm1().log()
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
    ) -> tuple[
        Float[Tensor, "H 1"],
        Complex[Tensor, "H N2"],
        Complex[Tensor, "H N2"],
        Complex[Tensor, "H N2"],
        Complex[Tensor, "H N2"],
    ]:
        """(dt, Lambda, P, B, C) broadcast to the H channels; C is C~ when l_kernel > 0."""
        copies = self.H // self.n_ssm
        dt = torch.exp(self.inv_dt) if self.dt_transform == "exp" else F.softplus(self.inv_dt)
        Lambda = torch.complex(-torch.exp(self.A_real), -self.A_imag).repeat(copies, 1)
        P = as_complex(self.P)[0].repeat(copies, 1)
        B = as_complex(self.B)[0].repeat(copies, 1)
        return dt, Lambda, P, B, as_complex(self.C)[0]

    def discretized_float64(self) -> tuple[Complex[Tensor, "H N N"], Complex[Tensor, "H N"], Complex[Tensor, "H N"]]:
        """(A_bar, B_bar, [C; conj C]) over the full state in float64; C itself, not C~."""
        dt, Lambda, P, B, C = (
            x.detach().to(torch.complex128 if x.is_complex() else torch.float64) for x in self.ssm_parameters()
        )
        A_bar, B_bar = dense_bilinear(dt, Lambda, P, B)
        C_full = conj_pairs(C)
        l = int(self.l_kernel)
        if l > 0:
            I = torch.eye(self.N, dtype=A_bar.dtype, device=A_bar.device)
            C_full = torch.linalg.solve((I - torch.linalg.matrix_power(A_bar, l)).mT, C_full)
        return A_bar, B_bar, C_full

    def C_float64(self) -> Complex[Tensor, "H N2"]:
        """C itself over the stored half, in float64: C~ solved back through the real form of A_bar
        (`real_bilinear_A`). With A_bar^l = T dA^l T^-1, the complex N x N system (I - A_bar^l)^T C = C~
        becomes the real (I - dA^l)^T z = real_pairs(C~), C = from_real_pairs(z): a quarter of the
        arithmetic of `discretized_float64`'s C."""
        dt, Lambda, P, _, C = (
            x.detach().to(torch.complex128 if x.is_complex() else torch.float64) for x in self.ssm_parameters()
        )
        l = int(self.l_kernel)  # mutate: skip a 0-d integer tensor serves as the int
        if l == 0:
            return C
        dA = real_bilinear_A(dt, Lambda, P)
        I = torch.eye(self.N, dtype=dA.dtype, device=dA.device)  # mutate: skip 1 and 0 are exact in any dtype
        return from_real_pairs(
            torch.linalg.solve((I - torch.linalg.matrix_power(dA, l)).mT, real_pairs(C))
        )  # mutate: skip dA is real: .mH is .mT, and I - dA takes dA's dtype

    @torch.no_grad()
    def _extend_C_tilde(self, L: int) -> None:
        """Make C hold C~ for a length >= L (see the class docstring), in float64, in the real basis
        of `C_float64`: z = real_pairs(C) maps through (I - dA^L)^T, and each doubling of the
        length through (I + dA^l)^T, as [C; conj C] does through the complex A_bar's."""
        dt, Lambda, P, _, C = (
            x.to(torch.complex128 if x.is_complex() else torch.float64) for x in self.ssm_parameters()
        )
        dA = real_bilinear_A(dt, Lambda, P)
        I = torch.eye(self.N, dtype=dA.dtype, device=dA.device)  # mutate: skip 1 and 0 are exact in any dtype
        z, l = real_pairs(C), int(self.l_kernel)
        if l == 0:
            z = ((I - torch.linalg.matrix_power(dA, L)).mT @ z[..., None])[..., 0]  # mutate: skip dA is real
            l = L
        while l < L:
            z = ((I + torch.linalg.matrix_power(dA, l)).mT @ z[..., None])[..., 0]  # mutate: skip dA is real
            l *= 2
        self.C.copy_(torch.view_as_real(from_real_pairs(z).to(as_complex(self.C).dtype))[None])
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
        reused until a parameter changes (see `_cache_key`); with autograd never. Under autocast
        (training in bf16) it is computed as without, in the parameters' precision: the kernel's
        slow modes are sums of many terms that 8 mantissa bits would lose."""
        with torch.autocast(self.B.device.type, enabled=False):
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

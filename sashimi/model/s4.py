"""The S4 layer: FFT convolution with the DPLR kernel, D skip, GELU, Linear H -> 2H, GLU
(or, in the pipeline variant `output="linear"`, Linear H -> H without GLU).

Module names mirror the published S4 block (`layer.kernel.*`, `layer.D`,
`output_linear.0.*`), so its state dict loads directly. Layout is (B, L, H).
"""

import torch
import torch.nn.functional as F
from torch import nn

from sashimi.core.config import S4Options
from sashimi.core.shapes import Complex, Float, Tensor, check_width
from sashimi.model.kernel import SSMKernel
from sashimi.model.recurrence import dplr_step, linear_step_coefficients, ssm_step, step_matrices
from sashimi.model.stepping import STEP_MODES


def fft_conv(u: Float[Tensor, "B L H"], K: Float[Tensor, "H L"]) -> Float[Tensor, "B L H"]:
    """Causal convolution y_t = sum_{j<=t} K_j u_{t-j}, by FFTs of length 2L (no wrap-around)."""
    return spectral_conv(u, kernel_spectrum(K))


def kernel_spectrum(K: Float[Tensor, "H L"]) -> Complex[Tensor, "F H"]:
    """rfft(K, 2L), frequencies first: the kernel's half of `fft_conv`."""
    return torch.fft.rfft(K, n=2 * K.shape[-1], dim=-1).mT


def spectral_conv(u: Float[Tensor, "B L H"], K_f: Complex[Tensor, "F H"]) -> Float[Tensor, "B L H"]:
    """`fft_conv` with the kernel given by its spectrum rfft(K, 2L)."""
    L = u.shape[1]
    u_f = torch.fft.rfft(u, n=2 * L, dim=1)
    return torch.fft.irfft(u_f * K_f, n=2 * L, dim=1)[:, :L]


DEFAULT_OPTIONS = S4Options()  # frozen: one shared default is safe


class S4Conv(nn.Module):
    """y = dropout(GELU(K * u + D u)); the published FFTConv (holds `kernel` and `D`)."""

    def __init__(self, H: int, options: S4Options = DEFAULT_OPTIONS):
        super().__init__()
        self.kernel = SSMKernel(H, N=options.d_state, n_ssm=options.n_ssm, dt_transform=options.dt_transform)
        self.D = nn.Parameter(torch.randn(1, H))
        self.dropout = nn.Dropout(options.dropout)
        self._step: tuple[Tensor, ...] | None = None
        self._step_fn = dplr_step
        self.step_mode: str | None = None  # the mode of the recurrence built by setup_step, None before
        self._step_key: tuple | None = None  # (mode and the kernel parameters' versions, those tensors)
        self._spectrum: tuple[Tensor, Tensor] | None = None

    def spectrum(self, L: int) -> Complex[Tensor, "F H"]:
        """rfft(K, 2L) of the kernel of length L; reused while the kernel itself is the cached one."""
        K = self.kernel(L)
        if self._spectrum is not None and self._spectrum[0] is K:
            return self._spectrum[1]
        K_f = kernel_spectrum(K)
        self._spectrum = (K, K_f) if not K.requires_grad else None
        return K_f

    def forward(self, u: Float[Tensor, "B L H"], K: Float[Tensor, "H L"] | None = None) -> Float[Tensor, "B L H"]:
        """K: the kernel `kernel(L)` when the caller computed it already. Under autocast (training
        in bf16) the convolution is computed as without, in the parameters' precision: u is cast up to
        it, and none of the convolution's operations is one autocast lowers (FFTs, elementwise products)."""
        u = u.to(torch.promote_types(u.dtype, self.D.dtype))  # mutate: skip promote_types is symmetric
        K_f = self.spectrum(u.shape[1]) if K is None else kernel_spectrum(K)
        return self.dropout(F.gelu(spectral_conv(u, K_f) + self.D * u))

    def setup_step(self, mode: str = "linear") -> None:
        """Build the recurrence (in float64, cast to the parameter dtype); call again after parameters
        change (a call with the same parameters, unchanged, returns at once).

        mode "linear": the O(N) DPLR recurrence (`dplr_step`), default; "dense": the real
        (H, N, N) matrix form (`ssm_step`), the plain version kept as its oracle.
        """
        if mode not in STEP_MODES:
            raise ValueError(f"step mode must be one of {STEP_MODES}; got {mode!r}")
        # the warm path: unchanged parameters (same tensors, same in-place versions; see
        # `SSMKernel._cache_key`) keep the recurrence built before, which costs about 1 s for the paper model
        key, tensors = self.kernel._cache_key(0)  # mutate: skip one constant at every call: only equality is read
        if self._step_key is not None and self._step_key[0] == (mode, key):
            return
        self._step_fn = dplr_step if mode == "linear" else ssm_step
        self._step = linear_step_coefficients(self.kernel) if mode == "linear" else step_matrices(self.kernel)
        self._step_key = ((mode, key), tensors)  # holding the tensors keeps their ids from being reused
        self.step_mode = mode

    @property
    def step_coefficients(self) -> tuple[Tensor, ...]:
        """What `setup_step` built: (a, b, g, m, c) of the linear recurrence, or the dense (dA, dB, dC)."""
        if self._step is None:
            raise RuntimeError("call setup_step() before reading the step coefficients")
        return self._step

    def default_state(self, batch: int) -> Float[Tensor, "B H N"]:
        return self.D.new_zeros(batch, self.kernel.H, self.kernel.N)

    def step(
        self, u: Float[Tensor, "B H"], state: Float[Tensor, "B H N"]
    ) -> tuple[Float[Tensor, "B H"], Float[Tensor, "B H N"]]:
        if self._step is None:
            raise RuntimeError("call setup_step() before step()")
        y, state = self._step_fn(state, u, *self._step)
        return self.dropout(F.gelu(y + self.D[0] * u)), state


class S4Layer(nn.Module):
    """The published S4 block: `layer` (S4Conv) then `output_linear` = Linear(H, 2H) + GLU.

    GLU(a) = a[:H] * sigmoid(a[H:]): the first H rows of the Linear are the value,
    the last H the gate. `output="linear"` is the pipeline's `final_act: id`: Linear(H, H)
    alone (the configuration of the official README's 4.1M-parameter SC09 model).
    """

    def __init__(self, H: int, options: S4Options = DEFAULT_OPTIONS):
        super().__init__()
        if options.output not in ("glu", "linear"):
            raise ValueError(f"S4 output must be 'glu' or 'linear'; got {options.output!r}")
        self.layer = S4Conv(H, options)
        if options.output == "glu":
            self.output_linear = nn.Sequential(nn.Linear(H, 2 * H), nn.GLU(dim=-1))
        else:
            self.output_linear = nn.Sequential(nn.Linear(H, H))

    def forward(self, u: Float[Tensor, "B L H"], K: Float[Tensor, "H L"] | None = None) -> Float[Tensor, "B L H"]:
        check_width(u, self.output_linear[0].in_features, "S4Layer")
        return self.output_linear(self.layer(u, K))

    def precompute(self, L: int) -> tuple[Tensor, ...]:
        """Extra arguments of `forward` worth computing outside an activation checkpoint: the
        kernel, so that recomputing the block in backward does not regenerate it."""
        return (self.layer.kernel(L),)

    def setup_step(self, mode: str = "linear") -> None:
        self.layer.setup_step(mode)

    def default_state(self, batch: int) -> Float[Tensor, "B H N"]:
        return self.layer.default_state(batch)

    def step(
        self, u: Float[Tensor, "B H"], state: Float[Tensor, "B H N"]
    ) -> tuple[Float[Tensor, "B H"], Float[Tensor, "B H N"]]:
        check_width(u, self.output_linear[0].in_features, "S4Layer.step")
        y, state = self.layer.step(u, state)
        return self.output_linear(y), state

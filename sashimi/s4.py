"""The S4 layer: FFT convolution with the DPLR kernel, D skip, GELU, Linear H -> 2H, GLU.

Module names mirror the published S4 block (`layer.kernel.*`, `layer.D`,
`output_linear.0.*`), so its state dict loads directly. Layout is (B, L, H).
"""

import torch
import torch.nn.functional as F
from torch import nn

from sashimi.kernel import SSMKernel, ssm_step
from sashimi.shapes import Float, Tensor


def fft_conv(u: Float[Tensor, "B L H"], K: Float[Tensor, "H L"]) -> Float[Tensor, "B L H"]:
    """Causal convolution y_t = sum_{j<=t} K_j u_{t-j}, by FFTs of length 2L (no wrap-around)."""
    L = u.shape[1]
    u_f = torch.fft.rfft(u, n=2 * L, dim=1)
    K_f = torch.fft.rfft(K, n=2 * L, dim=-1).mT
    return torch.fft.irfft(u_f * K_f, n=2 * L, dim=1)[:, :L]


class S4Conv(nn.Module):
    """y = dropout(GELU(K * u + D u)); the published FFTConv (holds `kernel` and `D`)."""

    def __init__(self, H: int, N: int = 64, n_ssm: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.kernel = SSMKernel(H, N=N, n_ssm=n_ssm)
        self.D = nn.Parameter(torch.randn(1, H))
        self.dropout = nn.Dropout(dropout)
        self._step: tuple[Tensor, Tensor, Tensor] | None = None

    def forward(self, u: Float[Tensor, "B L H"]) -> Float[Tensor, "B L H"]:
        K = self.kernel(u.shape[1])
        return self.dropout(F.gelu(fft_conv(u, K) + self.D * u))

    def setup_step(self) -> None:
        """Build the recurrence (in float64, cast to the parameter dtype); call again after parameters change."""
        self._step = self.kernel.step_matrices()

    def default_state(self, batch: int) -> Float[Tensor, "B H N"]:
        return self.D.new_zeros(batch, self.kernel.H, self.kernel.N)

    def step(self, u: Float[Tensor, "B H"], state: Float[Tensor, "B H N"]) -> tuple[Float[Tensor, "B H"], Float[Tensor, "B H N"]]:
        if self._step is None:
            raise RuntimeError("call setup_step() before step()")
        y, state = ssm_step(state, u, *self._step)
        return self.dropout(F.gelu(y + self.D[0] * u)), state


class S4Layer(nn.Module):
    """The published S4 block: `layer` (S4Conv) then `output_linear` = Linear(H, 2H) + GLU.

    GLU(a) = a[:H] * sigmoid(a[H:]): the first H rows of the Linear are the value,
    the last H the gate.
    """

    def __init__(self, H: int, N: int = 64, n_ssm: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.layer = S4Conv(H, N=N, n_ssm=n_ssm, dropout=dropout)
        self.output_linear = nn.Sequential(nn.Linear(H, 2 * H), nn.GLU(dim=-1))

    def forward(self, u: Float[Tensor, "B L H"]) -> Float[Tensor, "B L H"]:
        return self.output_linear(self.layer(u))

    def setup_step(self) -> None:
        self.layer.setup_step()

    def default_state(self, batch: int) -> Float[Tensor, "B H N"]:
        return self.layer.default_state(batch)

    def step(self, u: Float[Tensor, "B H"], state: Float[Tensor, "B H N"]) -> tuple[Float[Tensor, "B H"], Float[Tensor, "B H N"]]:
        y, state = self.layer.step(u, state)
        return self.output_linear(y), state

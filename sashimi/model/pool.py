"""DownPool and UpPool: the multi-scale resampling of SaShiMi, layout (B, L, H).

DownPool: fine time t = l P + s of channel h goes to channel h P + s at coarse step l,
then Linear(H P, H E). UpPool: Linear(H, (H/E) P), shift right by one coarse step
(causality), then channel h P + s at coarse step l goes to fine time l P + s of channel h.
"""

import torch
import torch.nn.functional as F
from torch import nn

from sashimi.core.shapes import Float, Tensor, check_width


def fold(x: Float[Tensor, "B L H"], pool: int) -> Float[Tensor, "B L_coarse HP"]:
    """(B, l P + s, h) -> (B, l, h P + s)."""
    B, L, H = x.shape
    return x.reshape(B, L // pool, pool, H).transpose(2, 3).reshape(B, L // pool, H * pool)


def unfold(x: Float[Tensor, "B L_coarse HP"], pool: int) -> Float[Tensor, "B L H"]:
    """(B, l, h P + s) -> (B, l P + s, h): the inverse of `fold`."""
    B, L, HP = x.shape
    return x.reshape(B, L, HP // pool, pool).transpose(2, 3).reshape(B, L * pool, HP // pool)


class DownPool(nn.Module):
    """(B, L, H) -> (B, L/P, H E). Step mode buffers P inputs and emits on the P-th."""

    def __init__(self, H: int, expand: int, pool: int):
        super().__init__()
        self.pool, self.d_output = pool, H * expand
        self.linear = nn.Linear(H * pool, H * expand)

    def forward(self, x: Float[Tensor, "B L H"]) -> Float[Tensor, "B L_coarse H_out"]:
        check_width(x, self.linear.in_features // self.pool, "DownPool")
        return self.linear(fold(x, self.pool))

    def setup_step(self, mode: str = "linear") -> None:
        pass  # the buffer is the whole state

    def default_state(self, batch: int) -> list:
        return []

    def step(self, x: Float[Tensor, "B H"], state: list) -> tuple[Float[Tensor, "B H_out"] | None, list]:
        check_width(x, self.linear.in_features // self.pool, "DownPool.step")
        state = [*state, x]
        if len(state) < self.pool:
            return None, state
        return self.linear(torch.stack(state, dim=-1).flatten(-2)), []


class UpPool(nn.Module):
    """(B, L, H) -> (B, L P, H/E), shifted one coarse step right so that output t sees only inputs < t's block.

    Step mode holds P pending outputs (zeros at first: the shift) and refills from
    the Linear when they run out, which is exactly when the coarse input arrives.
    """

    def __init__(self, H: int, expand: int, pool: int):
        super().__init__()
        self.pool, self.d_output = pool, H // expand
        self.linear = nn.Linear(H, self.d_output * pool)

    def forward(self, x: Float[Tensor, "B L H"]) -> Float[Tensor, "B L_fine H_out"]:
        check_width(x, self.linear.in_features, "UpPool")
        x = self.linear(x)
        x = F.pad(x[:, :-1], (0, 0, 1, 0))
        return unfold(x, self.pool)

    def setup_step(self, mode: str = "linear") -> None:
        pass  # the pending outputs are the whole state

    def default_state(self, batch: int) -> list:
        zeros = self.linear.weight.new_zeros(batch, self.d_output)
        return [zeros] * self.pool

    def step(self, x: Float[Tensor, "B H"] | None, state: list) -> tuple[Float[Tensor, "B H_out"], list]:
        y, state = state[0], state[1:]
        if not state:
            if x is None:
                raise RuntimeError("UpPool.step: buffer ran out but no coarse input arrived (steps out of phase)")
            check_width(x, self.linear.in_features, "UpPool.step")
            z = self.linear(x).reshape(x.shape[0], self.d_output, self.pool)
            state = list(z.unbind(-1))
        elif x is not None:
            raise RuntimeError("UpPool.step: coarse input arrived while outputs are still pending (steps out of phase)")
        return y, state

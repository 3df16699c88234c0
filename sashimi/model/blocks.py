"""Pre-norm residual blocks: x + dropout(layer(norm(x))), with an S4 or a feed-forward layer.

Names mirror the published `ResidualBlock` / `FFBlock` (`layer`, `norm`, `layer.ff.0.0`, `layer.ff.2`).
The norm is `nn.LayerNorm` (the standalone model) or the pipeline's `ScalarNorm`.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from sashimi.core.config import S4Options
from sashimi.core.shapes import Float, Tensor, check_width
from sashimi.model.s4 import S4Layer


class ChannelDropout(nn.Module):
    """Drops whole channels for all positions, as the published Dropout1d on (B, H, L)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Float[Tensor, "B L H"]) -> Float[Tensor, "B L H"]:
        if not self.training or self.p == 0:
            return x
        return F.dropout1d(x.transpose(1, 2), self.p, True).transpose(1, 2)


class ScalarNorm(nn.Module):
    """The pipeline's transposed LayerNorm: y = (s / sigma) (x - mu + m), with mu and sigma the
    mean and population standard deviation over channels and scalar parameters m, s. No epsilon,
    exactly as published (docs/DESIGN.md, "Pipeline variants"): an input constant over its
    channels gives inf or nan there, as it does in the published model."""

    def __init__(self):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(1))
        self.s = nn.Parameter(torch.ones(1))

    def forward(self, x: Float[Tensor, "*batch H"]) -> Float[Tensor, "*batch H"]:
        mu = x.mean(-1, keepdim=True)
        sigma = x.var(-1, unbiased=False, keepdim=True).sqrt()
        return (self.s / sigma) * (x - mu + self.m)


def make_norm(H: int, kind: str) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(H)
    if kind == "scalar":
        return ScalarNorm()
    raise ValueError(f"norm must be 'layer' or 'scalar'; got {kind!r}")


class FFLayer(nn.Module):
    """Linear(H, ff H) -> GELU -> dropout -> Linear(ff H, H)."""

    def __init__(self, H: int, expand: int = 2, dropout: float = 0.0):
        super().__init__()
        self.ff = nn.Sequential(
            nn.Sequential(nn.Linear(H, H * expand), nn.GELU()), nn.Dropout(dropout), nn.Linear(H * expand, H)
        )

    def forward(self, x: Float[Tensor, "*batch H"]) -> Float[Tensor, "*batch H"]:
        check_width(x, self.ff[0][0].in_features, "FFLayer")
        return self.ff(x)

    def precompute(self, L: int) -> tuple:
        return ()

    def default_state(self, batch: int) -> None:
        return None

    def setup_step(self, mode: str = "linear") -> None:
        pass  # nothing to build: the feed-forward layer acts on one position as on a sequence

    def step(self, x: Float[Tensor, "B H"], state: None) -> tuple[Float[Tensor, "B H"], None]:
        return self.forward(x), None


class ResidualBlock(nn.Module):
    """x + dropout(layer(norm(x))).

    When gradients are recorded and `checkpoint` is set (the default), the block keeps only its
    input (and the layer's `precompute` values, e.g. the S4 kernel spectrum) for backward and
    recomputes the rest there: activation memory drops ~4x for ~1 extra forward of the block
    (docs/PERFORMANCE.md). Values and gradients are unchanged.
    """

    def __init__(self, H: int, layer: nn.Module, dropout: float = 0.0, norm: str = "layer"):
        super().__init__()
        self.H, self.layer = H, layer
        self.norm = make_norm(H, norm)
        self.dropout = ChannelDropout(dropout)
        self.checkpoint = True

    def _body(self, x: Tensor, *extra: Tensor) -> Tensor:
        return self.dropout(self.layer(self.norm(x), *extra))

    def forward(self, x: Float[Tensor, "B L H"]) -> Float[Tensor, "B L H"]:
        check_width(x, self.H, "ResidualBlock")
        if (
            self.checkpoint
            and torch.is_grad_enabled()
            and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        ):
            extra = self.layer.precompute(x.shape[1])
            return x + checkpoint(self._body, x, *extra, use_reentrant=False)
        return x + self._body(x)

    def default_state(self, batch: int):
        return self.layer.default_state(batch)

    def setup_step(self, mode: str = "linear") -> None:
        self.layer.setup_step(mode)

    def step(self, x: Float[Tensor, "B H"], state) -> tuple[Float[Tensor, "B H"], object]:
        check_width(x, self.H, "ResidualBlock.step")
        y, state = self.layer.step(self.norm(x), state)
        return x + y, state


def s4_block(H: int, options: S4Options, norm: str = "layer") -> ResidualBlock:
    return ResidualBlock(H, S4Layer(H, options), options.dropout, norm)


def ff_block(H: int, expand: int, dropout: float, norm: str = "layer") -> ResidualBlock:
    return ResidualBlock(H, FFLayer(H, expand, dropout), dropout, norm)

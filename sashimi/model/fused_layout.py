"""The fused step's layout: every weight of the model packed into one flat tensor, each block
described by its kind, its norm and the slots (offset, shape) of its weights in that tensor."""

import math
import typing

import torch
import torch.nn.functional as F

from sashimi.core.shapes import Float, Tensor
from sashimi.model.blocks import FFLayer, ResidualBlock, ScalarNorm
from sashimi.model.s4 import S4Layer


class Pack:
    """The weights of one depth laid end to end in one flat tensor, each named by a slot
    (offset, shape): the compiled function then takes, and guards, one weight argument instead
    of about a hundred (dynamo's per-call guard check grows with the number of tensors)."""

    def __init__(self):
        self.parts, self.size = [], 0

    def slot(self, t: Tensor) -> tuple[int, tuple[int, ...]]:
        self.parts.append(t.detach().reshape(-1))
        slot = (self.size, tuple(t.shape))
        self.size += t.numel()
        return slot

    def tensor(self) -> Float[Tensor, " W"]:
        return torch.cat(self.parts)


@typing.no_type_check  # compiled: jaxtyping checks would break torch.compile
def take(flat: Float[Tensor, " W"], slot: tuple[int, tuple[int, ...]]) -> Tensor:
    offset, shape = slot
    return flat[offset : offset + math.prod(shape)].view(shape)


def norm_spec(norm: torch.nn.Module, pack: Pack) -> tuple:
    if isinstance(norm, ScalarNorm):
        return ("scalar", pack.slot(norm.m), pack.slot(norm.s))
    return ("layer", pack.slot(norm.weight), pack.slot(norm.bias), norm.eps)


@typing.no_type_check  # compiled
def apply_norm(x: Float[Tensor, "B H"], flat: Float[Tensor, " W"], spec: tuple) -> Float[Tensor, "B H"]:
    if spec[0] == "layer":
        return F.layer_norm(x, x.shape[-1:], take(flat, spec[1]), take(flat, spec[2]), spec[3])
    mu = x.mean(-1, keepdim=True)
    sigma = x.var(-1, unbiased=False, keepdim=True).sqrt()
    return (take(flat, spec[2]) / sigma) * (x - mu + take(flat, spec[1]))


def halves(pairs: Float[Tensor, "H N"]) -> tuple[Float[Tensor, "H N2"], Float[Tensor, "H N2"]]:
    """Interleaved (re, im) pairs -> the real parts and the imaginary parts, each contiguous."""
    return pairs[..., 0::2], pairs[..., 1::2]


def block_spec(block: ResidualBlock, pack: Pack) -> tuple:
    """One residual block in step mode: its kind, norm and weight slots."""
    layer = block.layer
    if isinstance(layer, S4Layer):
        conv = layer.layer
        if conv.step_mode != "linear":
            raise RuntimeError("FusedStep needs the model's linear recurrence: call model.setup_step() first")
        a, b, g, m, c = conv.step_coefficients
        linear = layer.output_linear[0]
        weights = (
            a.real,
            a.imag,
            *halves(b),
            *halves(g),
            *halves(m),
            *halves(c),
            conv.D[0],
            linear.weight,
            linear.bias,
        )
        return ("s4", norm_spec(block.norm, pack), *(pack.slot(w) for w in weights), len(layer.output_linear) > 1)
    if isinstance(layer, FFLayer):
        first, second = layer.ff[0][0], layer.ff[2]
        return (
            "ff",
            norm_spec(block.norm, pack),
            *(pack.slot(w) for w in (first.weight, first.bias, second.weight, second.bias)),
        )
    raise TypeError(f"FusedStep: unknown block layer {type(layer).__name__}")

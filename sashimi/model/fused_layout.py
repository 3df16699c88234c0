"""The fused step's layout: every weight of the model packed into one flat tensor, each depth and
each block described by a named record of the slots (offset, shape) of its weights in that tensor."""

import math
import typing
from typing import NamedTuple

import torch
import torch.nn.functional as F

from sashimi.core.shapes import Float, Tensor
from sashimi.model.blocks import FFLayer, ResidualBlock, ScalarNorm
from sashimi.model.s4 import S4Layer

Slot = tuple[int, tuple[int, ...]]  # (offset, shape) in a depth's flat weights


class NormSpec(NamedTuple):
    """A block's norm: LayerNorm (first = weight, second = bias, with eps) or the pipeline's
    ScalarNorm (first = m, second = s; no eps)."""

    kind: str  # "layer" or "scalar"
    first: Slot
    second: Slot
    eps: float = 0.0  # mutate: skip only a ScalarNorm takes the default, and it has no eps to read


class S4BlockSpec(NamedTuple):
    """An S4 block: its norm, the recurrence's coefficients (ar, ai, br, bi, gr, gi, mr, mi, cr, ci;
    `s4_recurrence` takes them in this order), D, the output linear and whether GLU follows it."""

    norm: NormSpec
    coefficients: tuple[Slot, ...]
    D: Slot
    weight: Slot
    bias: Slot
    glu: bool


class FFBlockSpec(NamedTuple):
    """A feed-forward block: its norm, Linear(H, ff H) -> GELU -> Linear(ff H, H)."""

    norm: NormSpec
    w1: Slot
    b1: Slot
    w2: Slot
    b2: Slot


class DepthSpec(NamedTuple):
    """One depth of the U-Net in step mode: its blocks, and either the embedding, final norm and
    decoder (depth 0) or the DownPool linear in and the UpPool linear out (with its pool)."""

    blocks: tuple[S4BlockSpec | FFBlockSpec, ...]
    embedding: Slot | None = None
    final_norm: NormSpec | None = None
    decoder: tuple[Slot, Slot] | None = None
    down: tuple[Slot, Slot] | None = None
    up: tuple[Slot, Slot] | None = None
    up_pool: int | None = None


class Pack:
    """The weights of one depth laid end to end in one flat tensor, each named by a slot
    (offset, shape): the compiled function then takes, and guards, one weight argument instead
    of about a hundred (dynamo's per-call guard check grows with the number of tensors)."""

    def __init__(self):
        self.parts, self.size = [], 0

    def slot(self, t: Tensor) -> Slot:
        self.parts.append(t.detach().reshape(-1))
        slot = (self.size, tuple(t.shape))
        self.size += t.numel()
        return slot

    def tensor(self) -> Float[Tensor, " W"]:
        return torch.cat(self.parts)


@typing.no_type_check  # compiled: jaxtyping checks would break torch.compile
def take(flat: Float[Tensor, " W"], slot: Slot) -> Tensor:
    offset, shape = slot
    return flat[offset : offset + math.prod(shape)].view(shape)


def norm_spec(norm: torch.nn.Module, pack: Pack) -> NormSpec:
    if isinstance(norm, ScalarNorm):
        return NormSpec("scalar", pack.slot(norm.m), pack.slot(norm.s))
    return NormSpec("layer", pack.slot(norm.weight), pack.slot(norm.bias), norm.eps)


@typing.no_type_check  # compiled: jaxtyping checks would break torch.compile
def apply_norm(x: Float[Tensor, "B H"], flat: Float[Tensor, " W"], norm: NormSpec) -> Float[Tensor, "B H"]:
    if norm.kind == "layer":
        return F.layer_norm(x, x.shape[-1:], take(flat, norm.first), take(flat, norm.second), norm.eps)
    mu = x.mean(-1, keepdim=True)
    sigma = x.var(-1, unbiased=False, keepdim=True).sqrt()
    return (take(flat, norm.second) / sigma) * (x - mu + take(flat, norm.first))


def halves(pairs: Float[Tensor, "H N"]) -> tuple[Float[Tensor, "H N2"], Float[Tensor, "H N2"]]:
    """Interleaved (re, im) pairs -> the real parts and the imaginary parts, each contiguous."""
    return pairs[..., 0::2], pairs[..., 1::2]


def block_spec(block: ResidualBlock, pack: Pack) -> S4BlockSpec | FFBlockSpec:
    """One residual block in step mode: its norm and weight slots."""
    layer = block.layer
    if isinstance(layer, S4Layer):
        conv = layer.layer
        if conv.step_mode != "linear":
            raise RuntimeError("FusedStep needs the model's linear recurrence: call model.setup_step() first")
        a, b, g, m, c = conv.step_coefficients
        linear = layer.output_linear[0]
        norm = norm_spec(block.norm, pack)
        coefficients = (a.real, a.imag, *halves(b), *halves(g), *halves(m), *halves(c))
        return S4BlockSpec(
            norm,
            tuple(pack.slot(w) for w in coefficients),
            pack.slot(conv.D[0]),
            pack.slot(linear.weight),
            pack.slot(linear.bias),
            len(layer.output_linear) > 1,
        )
    if isinstance(layer, FFLayer):
        first, second = layer.ff[0][0], layer.ff[2]
        norm = norm_spec(block.norm, pack)
        return FFBlockSpec(norm, *(pack.slot(w) for w in (first.weight, first.bias, second.weight, second.bias)))
    raise TypeError(f"FusedStep: unknown block layer {type(layer).__name__}")

"""FlashAttention's rule for `--precision bf16`: a fast low-precision path may be at most twice as far
from a high-precision reference as a plain implementation in the same precision is.

Here the fast path is training's own loss under bf16 autocast (`LossModel(lm, "bf16")`); the plain
bf16 implementation stores everything in bf16 (every parameter, every leaf module's inputs and outputs,
the gradients flowing back through them and the parameters' gradients) with float32 arithmetic
inside each operation; the reference is the same model in float64. What is compared is what a step
uses: every parameter's gradient of the summed loss, as one vector."""

import copy
import math

import torch

from sashimi.core.shapes import Float, Int, Tensor
from sashimi.harness.helpers import lm, tokens
from sashimi.harness.tolerance_cases import model_case
from sashimi.training.metrics import LossModel


def to_bf16(value):
    """A floating tensor rounded to bf16 (kept in its dtype: float32 arithmetic follows); autograd
    rounds the gradient flowing back through it the same way."""
    if isinstance(value, Tensor) and value.is_floating_point():
        return value.to(torch.bfloat16).to(value.dtype)
    if isinstance(value, tuple):
        return tuple(to_bf16(v) for v in value)
    return value


def plain_bf16(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` that stores every parameter and every leaf module's inputs and outputs in bf16."""
    plain = copy.deepcopy(model)
    with torch.no_grad():
        for p in plain.parameters():
            p.copy_(to_bf16(p))
    for module in plain.modules():
        if next(module.children(), None) is None:
            module.register_forward_pre_hook(lambda _module, args: to_bf16(args))
            module.register_forward_hook(lambda _module, _args, out: to_bf16(out))
    return plain


def gradients(
    model: torch.nn.Module, x: Int[Tensor, "B L"], precision: str, round_gradients: bool = False
) -> Float[Tensor, " P"]:
    """Every parameter's gradient of the summed loss on `x` (next-token targets `x`), as one float64 vector."""
    model.zero_grad(set_to_none=True)  # mutate: skip zeros or None: backward leaves the same gradients
    loss, _count = LossModel(model, precision)(x, x)
    loss.backward()
    grads = [to_bf16(p.grad) if round_gradients else p.grad for p in model.parameters()]
    return torch.cat([g.reshape(-1) for g in grads]).double()


def relative_error(got: Float[Tensor, " P"], want: Float[Tensor, " P"]) -> float:
    """||got - want|| / ||want||: over a vector of gradients the root of the mean squared error, steadier
    from case to case than the largest (which one entry's rounding decides)."""
    return float((got - want).norm() / want.norm())


def bf16_case(config: dict, seed: int, length: int) -> tuple[float, float]:
    """(error of the bf16 autocast gradients, error of the plain bf16 implementation's), both against
    float64, on a float32 model of `config` and two sequences of `length` tokens."""
    model = lm(seed, torch.float32, **config).eval()  # no dropout: the arithmetic is compared, not the draws
    x = tokens(seed, 2, length, 2 ** config["bits"])  # mutate: skip which tokens: the arithmetic is compared
    want = gradients(copy.deepcopy(model).double(), x, "float32")
    ours = gradients(model, x, "bf16")
    plain = gradients(plain_bf16(model), x, "float32", round_gradients=True)
    return relative_error(ours, want), relative_error(plain, want)


def bf16_vs_plain(rng, seed) -> tuple[float, float]:
    """A case of `python -m sashimi.harness.tolerances --measure`: a model as the whole-model rows draw
    them (8 and 16 bits, widths 4-20, both layouts) over four pooled frames."""
    config = model_case(rng)
    return bf16_case(config, seed, 4 * math.prod(config["pool"]))

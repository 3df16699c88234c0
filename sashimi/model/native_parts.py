"""The native library's small functions on their own, for their tests: the step's activations
(native_step.cpp's vectorized GELU and sigmoid; oracle: torch in float64), the sampling loop's
draw (`draw`, which `NativeStep.sample` runs after each step; oracles: the loop of
`sashimi.sampling.sample` and the float64 nucleus of `reference.sampling`) and the draw's exp
(`exp_draw`; oracle: the C library's exp)."""

import torch

from sashimi.core.shapes import Float, Int, Tensor
from sashimi.model import native


def activation(x: Float[Tensor, " n"], gate: bool = False) -> Float[Tensor, " n"]:
    """The native step's GELU (or, with `gate`, GLU's sigmoid) of x, float32 or float64 as x: the
    float32 path is the vectorized math the step runs (its oracle: torch in float64)."""
    lib = native.loaded()  # native.py's lines run at each call: what a C++ mutant's tests are chosen by
    out = x.detach().to("cpu", copy=True).contiguous()
    lib.sashimi_activation(int(out.dtype == torch.float64), int(gate), out.data_ptr(), out.numel())
    return out


def draw(
    logits: Float[Tensor, "B C"], uniforms: Float[Tensor, " B"], temperature: float, top_p: float
) -> tuple[Int[Tensor, " B"], Float[Tensor, " B"]]:
    """The native sampling loop's draw of one class per row (native_step.cpp's `draw`): the token and
    its log-probability, as `sashimi.sampling.sample`'s loop draws them from the same uniforms (its
    oracle)."""
    lib = native.loaded()  # native.py's lines run at each call: what a C++ mutant's tests are chosen by
    logits = logits.detach().to("cpu").contiguous()
    uniforms = uniforms.to("cpu", torch.float32).contiguous()
    tokens = torch.empty(logits.shape[0], dtype=torch.int64)
    picked = torch.empty(logits.shape[0], dtype=torch.float32)
    lib.sashimi_draw(
        int(logits.dtype == torch.float64),
        logits.data_ptr(),
        logits.shape[0],
        logits.shape[1],
        temperature,
        top_p,
        uniforms.data_ptr(),
        tokens.data_ptr(),
        picked.data_ptr(),
    )
    return tokens, picked


def exp_draw(x: Float[Tensor, " n"]) -> Float[Tensor, " n"]:
    """The draw's vectorized exp of each value of x (float64), as `draw` weighs its classes."""
    lib = native.loaded()  # native.py's lines run at each call: what a C++ mutant's tests are chosen by
    x = x.detach().to("cpu", torch.float64).contiguous()
    out = torch.empty_like(x)
    lib.sashimi_exp_draw(x.data_ptr(), out.data_ptr(), x.numel())
    return out

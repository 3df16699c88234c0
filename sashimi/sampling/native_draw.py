"""The native sampling loop's draw on its own (native_step.cpp's `draw`, which `NativeStep.sample`
runs after each step), for its tests and the tolerance measure: its oracles are the loop of
`sashimi.sampling.sample` and the float64 nucleus of `reference.sampling`."""

import torch

from sashimi.core.shapes import Float, Int, Tensor
from sashimi.model.native import library, reason


def draw(
    logits: Float[Tensor, "B C"], uniforms: Float[Tensor, " B"], temperature: float = 1.0, top_p: float = 1.0
) -> tuple[Int[Tensor, " B"], Float[Tensor, " B"]]:
    """The native sampling loop's draw of one class per row (native_step.cpp's `draw`): the token and
    its log-probability, as `sashimi.sampling.sample`'s loop draws them from the same uniforms (its
    oracle)."""
    lib = library()
    if lib is None:
        raise RuntimeError(f"the native step is not available here: {reason()}")
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

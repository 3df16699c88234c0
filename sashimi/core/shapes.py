"""The shape glossary: every jaxtyping dimension name in `sashimi` and `reference`.

    B   batch
    L   length (samples at the current stage)
    H   channels (d_model at the current stage)
    N   state size, both halves of each conjugate pair (64)
    N2  stored complex modes, N / 2
    C   classes, 2^bits
    K   number of positions kept by the decoder (l_output = k)
    S   number of SSM copies (n_ssm, or H when n_ssm is None)

Runtime checks (jaxtyping + beartype) are on in the test suite (pytest's
``--jaxtyping-packages`` option in pyproject.toml) and off by default elsewhere.
Switch them on for any run with ``SASHIMI_TYPECHECK=1`` in the environment
(read when ``sashimi`` is first imported).


Runtime checks bind dimensions within one call only: a module fed a tensor as wide as nothing
it was built for would pass them and fail deep inside torch. So modules also call
`check_width` on their input (always on: one integer comparison).
"""

from jaxtyping import Complex, Float, Int, Shaped
from torch import Tensor

__all__ = ["Complex", "Float", "Int", "Shaped", "ShapeError", "Tensor", "check_width"]


class ShapeError(ValueError):
    """A tensor whose shape disagrees with the module it is given to."""


def check_width(x: Tensor, H: int, owner: str) -> None:
    """x's last axis (dimension H, channels) must be the width `owner` was built with."""
    if x.shape[-1] != H:
        raise ShapeError(
            f"{owner}: dimension H (channels, the last axis) must be {H}, the width it was built with; got "
            f"{x.shape[-1]} in an input of shape {tuple(x.shape)}"
        )

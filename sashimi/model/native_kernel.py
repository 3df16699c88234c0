"""The S4 kernel's Cauchy sums by the native library (sashimi/model/native_cauchy.cpp).

`cauchy._cauchy_pairs_chunked` writes (H, N2, F) arrays of 1 / Q' a chunk at a time and multiplies
them by W in a batched GEMM of 8 rows: on a CPU most of the time goes to moving those arrays. The
native loop computes 1 / Q' in registers and sums it into the eight sums at once, on torch's
threads. Where it does not run (not a CPU, not float32 or float64, no native library, or ENABLED
False), `pair_sums` and `response` return None and the PyTorch form runs: that form is its oracle
(tests/model/test_cauchy.py)."""

import torch

from sashimi.core.shapes import Float, Tensor

# The PyTorch form everywhere when False: tests/model/test_cauchy.py runs every test with each.
ENABLED = True


def pair_sums(
    W: Float[Tensor, "H 8 N2"],
    R4: Float[Tensor, "H N2"],
    M: Float[Tensor, "H N2"],
    s: Float[Tensor, " F"],
    c: Float[Tensor, " F"],
) -> Float[Tensor, "H 8 2 F"] | None:
    """The (X, Y) sums of `cauchy_pairs_plain`, real and imaginary parts, as `_cauchy_pairs_chunked`
    gives them; None where the native loop does not run (see the module)."""
    return _native(W, R4, M, s, c, response=False)


def response(
    W: Float[Tensor, "H 8 N2"],
    R4: Float[Tensor, "H N2"],
    M: Float[Tensor, "H N2"],
    s: Float[Tensor, " F"],
    c: Float[Tensor, " F"],
) -> Float[Tensor, "H F 2"] | None:
    """K^ of `dplr_response` as real pairs (the sums and the Woodbury correction in one loop); None
    where the native loop does not run (see the module)."""
    return _native(W, R4, M, s, c, response=True)


def _native(W, R4, M, s, c, response: bool):
    if not ENABLED or W.device.type != "cpu" or W.dtype not in (torch.float32, torch.float64) or W.shape[1] != 8:
        return None
    from sashimi.model.native import library  # not above: native imports the model, whose kernel imports this

    lib = library()
    if lib is None:
        return None
    H, _, N2 = W.shape
    F = s.shape[0]
    W, R4, M, s, c = (t.detach().to(W.dtype).contiguous() for t in (W, R4, M, s, c))
    out = W.new_empty((H, F, 2) if response else (H, 8, 2, F))
    pointers = [t.data_ptr() for t in (W, R4, M, s, c, out)]
    lib.sashimi_cauchy(int(W.dtype == torch.float64), *pointers, H, N2, F, int(response), torch.get_num_threads())
    return out

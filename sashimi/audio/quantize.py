"""Audio <-> tokens: the published mu-law and linear quantizers (docs/DESIGN.md, "Quantization").

With b bits, q = 2^b levels and mu = q - 1, an example x (the last axis; any
leading axes are independent examples) is encoded as

    mu-law:  s = 2 (x - min x) / (max x - min x + 1e-6) - 1              in [-1, 1)
             e = sign(s) log1p(mu |s + 1e-8|) / log1p(mu)                in [-1, 1]
             u = (e + 1) / 2                                             in [0, 1]
    linear:  u = (x - min x) / (max x - min x + 1e-6)                    in [0, 1)
    both:    k = floor(u (q - 0.01) + 0.005)                             in [0, q - 1]

(an example spanning at most 2^-15, silence, maps to u = 1/2: the zero level), and a token k
decodes to y = k / (q/2) - 1 (linear), or for mu-law to
sign(y) ((1 + mu)^|y| - 1) / mu. The zero level is k = q/2 (y = 0).

Every step is computed in float32, in the published operation order: the
published tokens are reproduced exactly only that way (float64 moves a few by
one level, and more for 16-bit).
"""

import torch

from sashimi.core.shapes import Float, Int, Tensor

METHODS = ("mulaw", "linear")
BITS = (8, 16)


def check_bits(bits: int) -> int:
    """q = 2^bits, after checking that bits is one of BITS."""
    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}; got {bits!r}")
    return 1 << bits


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown quantization method {method!r}; choose one of {METHODS}")
    return method


def zero_level(bits: int) -> int:
    """The token of the value 0: q/2 = 2^(bits-1)."""
    return check_bits(bits) // 2


def _float32_signal(x: Tensor) -> Tensor:
    if x.shape[-1] == 0:
        raise ValueError("cannot quantize an empty signal (length 0)")
    x = x.to(torch.float32)
    bad = ~torch.isfinite(x)
    if bad.any():
        position = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"signal must be finite; got {x[position].item()} at position {position}")
    return x


# An example whose samples span at most this (one step of 16-bit PCM) is silence: min-max scaling
# would stretch it to full scale (a constant at `low`, full-scale DC, for an all-zero file).
SILENT_SPAN = 2.0**-15


def minmax_scale(x: Float[Tensor, "*batch L"], low: int, high: int) -> Float[Tensor, "*batch L"]:
    """low + (high - low) (x - min x) / (max x - min x + 1e-6), min and max over L, in float32;
    a silent example (max x - min x <= SILENT_SPAN, e.g. all zeros or one sample) stays silent: the
    middle of [low, high], which quantizes to the zero level."""
    x = _float32_signal(x)
    lo = torch.amin(x, dim=-1, keepdim=True)
    hi = torch.amax(x, dim=-1, keepdim=True)
    silent = (hi - lo) <= SILENT_SPAN
    return torch.where(silent, torch.full_like(x, (low + high) / 2), low + (high - low) * (x - lo) / (hi - lo + 1e-6))


def quantize_unit(u: Float[Tensor, "*batch L"], bits: int) -> Int[Tensor, "*batch L"]:
    """k = floor(u (q - 0.01) + 0.005) for u in [0, 1]: k in [0, q - 1], int64."""
    q = check_bits(bits)
    return (u * (q - 0.01) + 0.005).long()


def dequantize(tokens: Int[Tensor, "*batch L"], bits: int) -> Float[Tensor, "*batch L"]:
    """y = k / (q/2) - 1, float32 in [-1, 1)."""
    q = check_bits(bits)
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= q):
        bad = (tokens < 0) | (tokens >= q)
        position = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"tokens must lie in [0, {q - 1}] for {bits} bits; got {tokens[position].item()} at position {position}"
        )
    return tokens.float() / (q / 2) - 1


def mu_law_encode(x: Float[Tensor, "*batch L"], bits: int) -> Int[Tensor, "*batch L"]:
    """Min-max to s in [-1, 1], e = sign(s) log1p(mu |s + 1e-8|) / log1p(mu), u = (e + 1)/2, k = floor(u (q - 0.01) +
    0.005)."""
    mu = torch.tensor(float(check_bits(bits) - 1), dtype=torch.float32)
    s = minmax_scale(x, -1, 1)
    e = torch.sign(s) * (torch.log1p(mu * torch.abs(s + 1e-8)) / torch.log1p(mu))
    return quantize_unit((e + 1) / 2, bits)


def mu_law_decode(tokens: Int[Tensor, "*batch L"], bits: int) -> Float[Tensor, "*batch L"]:
    """y = k / (q/2) - 1, then x = sign(y) ((1 + mu)^|y| - 1) / mu: float32 in [-1, 1)."""
    mu = check_bits(bits) - 1
    y = dequantize(tokens, bits)
    return torch.sign(y) * ((1 + mu) ** torch.abs(y) - 1) / mu


def linear_encode(x: Float[Tensor, "*batch L"], bits: int) -> Int[Tensor, "*batch L"]:
    """u = (x - min x) / (max x - min x + 1e-6), k = floor(u (q - 0.01) + 0.005)."""
    check_bits(bits)
    return quantize_unit(minmax_scale(x, 0, 1), bits)


def linear_decode(tokens: Int[Tensor, "*batch L"], bits: int) -> Float[Tensor, "*batch L"]:
    """x = k / (q/2) - 1: float32 in [-1, 1)."""
    return dequantize(tokens, bits)


def encode(x: Float[Tensor, "*batch L"], bits: int, method: str) -> Int[Tensor, "*batch L"]:
    """Tokens of x by `method` ("mulaw" or "linear"), each example (last axis) min-max scaled on its own."""
    check_bits(bits)
    encoder = {"mulaw": mu_law_encode, "linear": linear_encode}[check_method(method)]
    return encoder(x, bits)


def decode(tokens: Int[Tensor, "*batch L"], bits: int, method: str) -> Float[Tensor, "*batch L"]:
    """Signal in [-1, 1) from tokens by `method` ("mulaw" or "linear")."""
    check_bits(bits)
    decoder = {"mulaw": mu_law_decode, "linear": linear_decode}[check_method(method)]
    return decoder(tokens, bits)

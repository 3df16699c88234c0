"""The quantizers: range, monotonicity, proven round-trip bounds, hand-derived values, bad arguments.

Round-trip bounds. With s the float32 min-max-scaled example (linear: s in [0, 1];
mu-law: e = F(s) = sign(s) log1p(mu |s + 1e-8|) / log1p(mu), u = (e + 1)/2) the token
is k = floor(v), v = u (q - 0.01) + 0.005, so v - 1 < k <= v and

    k/q - u  in  ((0.005 - 0.01 u - 1)/q, (0.005 - 0.01 u)/q].

Decoding gives y = 2k/q - 1, and the target is 2u - 1 (linear: the scaled signal
2s - 1; mu-law: the companded e), so

    y - (2u - 1)  in  ((0.01 - 0.02 u - 2)/q, (0.01 - 0.02 u)/q]  subset of  (-2.01/q, 0.01/q]:

the decoded value is the bottom of its level (truncation, not rounding), at most
2.01/q below. For mu-law in the signal domain, with D = |y - e| < 2.01/q and
F^-1(y) = sign(y) (q^|y| - 1)/mu: for y, e of one sign,
x_hat - F^-1(e) = (1/mu + |F^-1(e)|)(q^(+-D) - 1); of opposite signs,
|x_hat| + |F^-1(e)| <= (q^D - 1)/mu. Hence

    |mu_law_decode(k) - s| <= (1/mu + |s|)(q^(2.01/q) - 1)     (+ 2e-8 from the offset 1e-8)

a relative error of about 2.01 ln(q)/q (4.4% for 8 bits, 0.03% for 16). Every bound is
checked with a slack for float32 rounding of a few hundredths of a level.
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sashimi.audio import quantize as Q
from tests.helpers import bit_depths, quantization_methods, signals

f32 = np.float32


def scaled_and_level(x: np.ndarray, bits: int, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(s, u, v) of docs/DESIGN.md, "Quantization", in numpy float32, written independently of sashimi.audio.quantize:
    s the min-max-scaled signal, u in [0, 1] the value quantized, v = u (q - 0.01) + 0.005.
    Silence (a span of at most 2^-15) scales to the middle of the range."""
    q = 2**bits
    lo, hi = x.min(), x.max()
    silent = hi - lo <= f32(2.0**-15)
    if method == "linear":
        s = np.full_like(x, 0.5) if silent else (x - lo) / (hi - lo + f32(1e-6))
        u = s
    else:
        s = np.zeros_like(x) if silent else f32(-1) + f32(2) * (x - lo) / (hi - lo + f32(1e-6))
        mu = f32(q - 1)
        e = np.sign(s) * (np.log1p(mu * np.abs(s + f32(1e-8))) / np.log1p(mu))
        u = (e + f32(1)) / f32(2)
    return s, u, u * f32(q - 0.01) + f32(0.005)


def tokens_of(x: np.ndarray, bits: int, method: str) -> np.ndarray:
    k = Q.encode(torch.from_numpy(x), bits, method)
    assert k.dtype == torch.int64 and k.shape == x.shape
    return k.numpy()


@given(signals(), bit_depths, quantization_methods)
def test_tokens_lie_in_range(x, bits, method):
    k = tokens_of(x, bits, method)
    assert k.min() >= 0 and k.max() <= 2**bits - 1


@given(signals(), bit_depths, quantization_methods)
def test_encoding_is_monotonic(x, bits, method):
    assert np.all(np.diff(tokens_of(np.sort(x), bits, method)) >= 0)


@given(signals(), bit_depths, quantization_methods)
def test_tokens_match_an_independent_float32_transcription(x, bits, method):
    """Equal to floor(v) of the numpy transcription; off by one only where v is within 0.02 of a level boundary."""
    k = tokens_of(x, bits, method)
    v = scaled_and_level(x, bits, method)[2].astype(np.float64)
    diff = k - np.floor(v)
    near_boundary = np.abs(v - np.round(v)) < 0.02
    assert np.all(diff[~near_boundary] == 0), f"tokens differ at {np.flatnonzero(diff != 0 & ~near_boundary)[:5]}"
    assert np.all(np.abs(diff) <= 1)


def level_bounds(u: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of y - (2u - 1), widened by 0.05 level (0.1/q) for float32 rounding."""
    slack = 0.1 / q
    return (0.01 - 0.02 * u - 2) / q - slack, (0.01 - 0.02 * u) / q + slack


@given(signals(), bit_depths)
def test_linear_round_trip_bound(x, bits):
    q = 2**bits
    s = scaled_and_level(x, bits, "linear")[0].astype(np.float64)
    y = Q.decode(Q.encode(torch.from_numpy(x), bits, "linear"), bits, "linear").double().numpy()
    low, high = level_bounds(s, q)
    error = y - (2 * s - 1)
    assert np.all(error > low) and np.all(error <= high), f"error in [{error.min():.3g}, {error.max():.3g}]"
    assert np.abs(error).max() < 2.01 / q + 0.1 / q


@given(signals(), bit_depths)
def test_mu_law_round_trip_bound_in_the_companded_domain(x, bits):
    q, mu = 2**bits, 2**bits - 1
    s = scaled_and_level(x, bits, "mulaw")[0].astype(np.float64)
    e = np.sign(s) * np.log1p(mu * np.abs(s + 1e-8)) / np.log1p(mu)
    u = (e + 1) / 2
    k = Q.encode(torch.from_numpy(x), bits, "mulaw")
    y = Q.linear_decode(k, bits).double().numpy()
    low, high = level_bounds(u, q)
    error = y - e
    assert np.all(error > low) and np.all(error <= high), f"error in [{error.min():.3g}, {error.max():.3g}]"


@given(signals(), bit_depths)
def test_mu_law_round_trip_bound_in_the_signal_domain(x, bits):
    q, mu = 2**bits, 2**bits - 1
    s = scaled_and_level(x, bits, "mulaw")[0].astype(np.float64)
    x_hat = Q.decode(Q.encode(torch.from_numpy(x), bits, "mulaw"), bits, "mulaw").double().numpy()
    bound = (1 / mu + np.abs(s) + 2e-8) * (q ** (2.11 / q) - 1) + 2e-8 + 5e-7
    assert np.all(np.abs(x_hat - s) <= bound), f"worst excess {np.max(np.abs(x_hat - s) - bound):.3g}"


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("method", ["mulaw", "linear"])
def test_minimum_maps_to_zero_and_constant_signal_to_the_zero_level(bits, method):
    """min -> s at the bottom (u = 0) -> k = floor(0.005) = 0; a constant is silence: the zero level
    q/2 (the published quantizer gives token 0, full-scale DC: the one place we differ on purpose)."""
    assert tokens_of(np.array([-2.0, 5.0, 3.0], f32), bits, method)[0] == 0
    assert np.all(tokens_of(np.full(7, 0.25, f32), bits, method) == 2 ** (bits - 1))


# [-1, 0, 1] in float32: 2 + 1e-6 rounds to 2 + 2^-20, so the mu-law scaling gives
# s = [-1, -2^-21, 1 - 2^-20] and the linear one [0, 1/2 - 2^-22, 1 - 2^-21].
THREE_POINTS = {
    "mulaw": np.array([-1.0, -(2.0**-21), 1 - 2.0**-20]),
    "linear": np.array([0.0, 0.5 - 2.0**-22, 1 - 2.0**-21]),
}


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("method", ["mulaw", "linear"])
def test_hand_derived_tokens_of_minus_one_zero_one(bits, method):
    """The max maps to q - 1, but 0 lands below the zero level q/2: the 1e-6 in the
    denominator shifts it by 2^-21 (for 16-bit mu-law, whose slope at 0 is mu / ln q, by 90 levels)."""
    q, mu = 2**bits, 2**bits - 1
    x = np.array([-1.0, 0.0, 1.0], f32)
    s = THREE_POINTS[method]
    assert np.array_equal(scaled_and_level(x, bits, method)[0], s.astype(f32))
    u = s if method == "linear" else (np.sign(s) * np.log1p(mu * np.abs(s + 1e-8)) / np.log1p(mu) + 1) / 2
    v = u * (q - 0.01) + 0.005
    assert np.all(np.abs(v - np.round(v)) > 1e-5), "a level boundary too close to decide in float64"
    expected = np.floor(v).astype(np.int64)
    assert expected[0] == 0 and expected[2] == q - 1
    assert (
        expected[1]
        == {("mulaw", 8): 127, ("mulaw", 16): 32678, ("linear", 8): 127, ("linear", 16): 32767}[method, bits]
    )
    assert np.array_equal(tokens_of(x, bits, method), expected)


@pytest.mark.parametrize("bits", [8, 16])
def test_hand_derived_decoded_values(bits):
    q, mu = 2**bits, 2**bits - 1
    k = torch.tensor([0, q // 2, q - 1])
    assert Q.zero_level(bits) == q // 2
    assert torch.equal(Q.decode(k, bits, "linear"), torch.tensor([-1.0, 0.0, 1 - 2 / q]))
    top = (q ** (1 - 2 / q) - 1) / mu
    y = Q.decode(k, bits, "mulaw")
    assert y.dtype == torch.float32 and y[0] == -1 and y[1] == 0
    assert abs(y[2].item() - top) <= 1e-6 * top


@given(signals(max_L=50), bit_depths, quantization_methods)
def test_leading_axes_are_independent_examples(x, bits, method):
    batch = torch.from_numpy(np.stack([x, x[::-1].copy() * 3, np.full_like(x, 2.0)]))[None]
    k = Q.encode(batch, bits, method)
    assert k.shape == batch.shape
    for i in range(3):
        assert torch.equal(k[0, i], Q.encode(batch[0, i], bits, method))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: Q.encode(torch.zeros(4), 12, "mulaw"), "bits must be one of"),
        (lambda: Q.decode(torch.zeros(4, dtype=torch.long), 4, "linear"), "bits must be one of"),
        (lambda: Q.mu_law_encode(torch.zeros(4), 32), "bits must be one of"),
        (lambda: Q.encode(torch.zeros(4), 8, "mu-law"), r"'mu-law'.*'mulaw', 'linear'"),
        (lambda: Q.decode(torch.zeros(4, dtype=torch.long), 8, "alaw"), r"'alaw'.*'mulaw', 'linear'"),
        (lambda: Q.decode(torch.tensor([0, 3, 256]), 8, "mulaw"), r"\[0, 255\].*256 at position \(2,\)"),
        (lambda: Q.decode(torch.tensor([-100, 3]), 16, "linear"), r"-100 at position \(0,\)"),
        (lambda: Q.encode(torch.tensor([0.0, float("nan")]), 8, "linear"), r"finite.*nan at position \(1,\)"),
        (lambda: Q.encode(torch.zeros(0), 8, "linear"), "empty"),
    ],
)
def test_bad_arguments_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@given(
    bit_depths,
    quantization_methods,
    st.sampled_from([0.0, 0.25, -0.7]),
    st.integers(1, 50),
    st.sampled_from([0.0, 2.0**-16, 2.0**-15]),
)
def test_silence_encodes_to_the_zero_level(bits, method, level, n, jitter):
    """A constant example (any level, one sample or many), or one spanning at most 2^-15, is silence:
    every token is the zero level q/2, never full-scale DC at one end of the range."""
    x = torch.full((n,), level, dtype=torch.float32)
    x[::2] += jitter
    tokens = Q.encode(x, bits, method)
    assert torch.equal(tokens, torch.full_like(tokens, Q.zero_level(bits)))


@given(bit_depths, quantization_methods)
def test_just_above_silence_is_still_min_max_scaled(bits, method):
    """Two levels 2^-14 apart are stretched to (nearly) the whole range, as the published per-file
    min-max rule says (the + 1e-6 in its denominator keeps the top 1.6% short of it)."""
    tokens = Q.encode(torch.tensor([0.0, 2.0**-14]), bits, method)
    assert int(tokens[0]) == 0 and int(tokens[1]) >= 0.95 * (2**bits - 1)

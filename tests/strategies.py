"""The one place that draws random inputs: hypothesis strategies and seeded parameter draws."""

import math

import numpy as np
import torch
from hypothesis import strategies as st

DTYPES = {"float64": torch.float64, "float32": torch.float32}


@st.composite
def ssm_sizes(draw, max_H: int = 4, max_N2: int = 6, max_L: int = 40):
    """(H, N2, n_ssm, L): n_ssm is None (per channel), 1 (tied), or another divisor of H."""
    H = draw(st.integers(1, max_H))
    N2 = draw(st.integers(1, max_N2))
    divisors = [d for d in range(1, H + 1) if H % d == 0]
    n_ssm = draw(st.sampled_from([None, *divisors]))
    L = draw(st.one_of(st.just(1), st.integers(1, max_L)))
    return H, N2, n_ssm, L


seeds = st.integers(0, 2**32 - 1)
# 0: C holds C (fresh); otherwise C holds C~ for this many samples (shorter, equal or longer than L)
l_kernel_modes = st.sampled_from(["fresh", "equal", "shorter", "longer"])


def l_kernel_for(mode: str, L: int) -> int:
    return {"fresh": 0, "equal": L, "shorter": max(1, L // 3), "longer": 2 * L + 1}[mode]


def randomize_ssm_(kernel, seed: int, l_kernel: int = 0) -> None:
    """Overwrite an SSMKernel's parameters with random draws: Delta across and beyond
    its init range [1e-3, 1e-1], random Lambda, and complex normal B, P, C."""
    rng = np.random.default_rng(seed)
    S, H, N2 = kernel.A_real.shape[0], kernel.H, kernel.N2

    def cnormal(*shape):
        return rng.standard_normal((*shape, 2)) / math.sqrt(2)

    values = {
        "inv_dt": rng.uniform(math.log(1e-4), math.log(1.0), (H, 1)),
        "A_real": rng.uniform(-2.0, 2.0, (S, N2)),
        "A_imag": rng.uniform(-30.0, 30.0, (S, N2)),
        "B": cnormal(1, S, N2),
        "P": cnormal(1, S, N2),
        "C": cnormal(1, H, N2),
    }
    with torch.no_grad():
        for name, value in values.items():
            getattr(kernel, name).copy_(torch.from_numpy(value))
        kernel.l_kernel.fill_(l_kernel)


def randn(seed: int, *shape, dtype=torch.float64) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape)).to(dtype)


@st.composite
def small_model_configs(draw, bits=None):
    """Small SaShiMi configurations: every layout feature (pools, expand, ff on/off, n_ssm) at toy sizes."""
    pool = draw(st.sampled_from([[2, 2], [4, 4], [2, 3], [3, 2]]))
    return dict(
        bits=draw(st.sampled_from([8, 16])) if bits is None else bits,
        d_model=draw(st.sampled_from([2, 4, 6])),
        n_layers=draw(st.integers(1, 2)),
        pool=pool,
        expand=draw(st.sampled_from([1, 2])),
        ff=draw(st.sampled_from([0, 2])),
        n_ssm=draw(st.sampled_from([1, None])),
        d_state=2 * draw(st.integers(1, 3)),
    )


def tokens(seed: int, batch: int, length: int, n_classes: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, n_classes, (batch, length)))


# Audio quantization and datasets (tests/test_quantize.py, tests/test_data.py)
bit_depths = st.sampled_from([8, 16])
quantization_methods = st.sampled_from(["mulaw", "linear"])


@st.composite
def signals(draw, max_L: int = 400) -> np.ndarray:
    """A float32 signal (L,) at an audio-like scale: a seeded random waveform, a sine or a
    hypothesis-chosen array (repeats, constants, tiny and large values), times 10^k, k in [-4, 3]."""
    L = draw(st.integers(1, max_L))
    kind = draw(st.sampled_from(["noise", "sine", "drawn"]))
    if kind == "drawn":
        from hypothesis.extra.numpy import arrays

        x = draw(arrays(np.float64, L, elements=st.floats(-1.0, 1.0, allow_nan=False)))
    else:
        rng = np.random.default_rng(draw(seeds))
        x = rng.standard_normal(L) if kind == "noise" else np.sin(rng.uniform(0.001, 1.0) * np.arange(L) + rng.uniform(0, 6.3))
        x = x + draw(st.sampled_from([0.0, 0.5, -3.0]))
    return (x * 10.0 ** draw(st.integers(-4, 3))).astype(np.float32)


@st.composite
def token_clips(draw, max_L: int = 64) -> tuple[np.ndarray, int, int]:
    """(tokens (n,), L, bits) with 1 <= n <= L: one (possibly short) clip of a file."""
    bits = draw(bit_depths)
    L = draw(st.integers(1, max_L))
    n = draw(st.integers(1, L))
    tokens = np.random.default_rng(draw(seeds)).integers(0, 2**bits, n)
    return tokens, L, bits

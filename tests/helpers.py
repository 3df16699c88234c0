"""The one helpers module of the tests: hypothesis strategies, the models and seeded draws shared
with the harness (`sashimi.harness.helpers`), the rollout, fixtures, and small command-line helpers.
A pytest plugin of the root conftest.py (its fixtures reach every test); test modules import from here,
never from each other."""

import copy
import json
import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import settings
from hypothesis import strategies as st

from reference import pipeline as ref_pipeline
from reference import sampling as ref_sampling
from sashimi.audio.synthetic import write_synthetic_dataset
from sashimi.core import config as config_module
from sashimi.core.config import TrainConfig
from sashimi.harness.helpers import (
    lm,
    numpy_state,
    randn,
    randomize_ssm_,
    s4_layer,
    tiny_config,
    tokens,
)
from sashimi.model.rollout import rollout
from sashimi.training.loop import train

__all__ = ["lm", "numpy_state", "randn", "randomize_ssm_", "rollout", "s4_layer", "tiny_config", "tokens"]


ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# the published implementation's outputs, committed (tools/README.md says how they are made)
PUBLISHED = ROOT / "tests" / "published"
FIXTURES = Path(os.environ.get("SASHIMI_FIXTURES", PUBLISHED))
SPOKEN_DIGITS = SHARED / "data" / "spoken-digits"


# --- hypothesis strategies: the one place that draws random inputs ---------------------------


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

# the published S4 variants: (dt_transform, output)
s4_variants = st.tuples(st.sampled_from(config_module.DT_TRANSFORMS), st.sampled_from(config_module.S4_OUTPUTS))

# 0: C holds C (fresh); otherwise C holds C~ for this many samples (shorter, equal or longer than L)
l_kernel_modes = st.sampled_from(["fresh", "equal", "shorter", "longer"])


def l_kernel_for(mode: str, L: int) -> int:
    return {"fresh": 0, "equal": L, "shorter": max(1, L // 3), "longer": 2 * L + 1}[mode]


@st.composite
def small_model_configs(draw, bits=None, dropout: bool = False, min_d_model: int = 2):
    """Small SaShiMi configurations: every layout feature (pools, odd lengths with [3, 3], expand, ff on/off,
    n_ssm None or any divisor of d_model, which divides every stage's width) at toy sizes, in every published
    variant (norm, Delta transform, S4 output); with `dropout`, a dropout rate > 0 as well."""
    pool = draw(st.sampled_from([[2, 2], [4, 4], [2, 3], [3, 2], [3, 3]]))
    d_model = draw(st.sampled_from([d for d in (2, 4, 6) if d >= min_d_model]))
    config = dict(
        bits=draw(st.sampled_from([8, 16])) if bits is None else bits,
        d_model=d_model,
        n_layers=draw(st.integers(1, 2)),
        pool=pool,
        expand=draw(st.sampled_from([1, 2])),
        ff=draw(st.sampled_from([0, 2])),
        n_ssm=draw(st.sampled_from([None, *(d for d in range(1, d_model + 1) if d_model % d == 0)])),
        d_state=2 * draw(st.integers(1, 3)),
        norm=draw(st.sampled_from(config_module.NORMS)),
        dt_transform=draw(st.sampled_from(config_module.DT_TRANSFORMS)),
        s4_output=draw(st.sampled_from(config_module.S4_OUTPUTS)),
    )
    if dropout:
        config["dropout"] = draw(st.sampled_from([0.1, 0.25, 0.5]))
    return config


# --- how many examples the model properties draw (step == convolution, fast == reference, purity,
# cache, fused == module step): more than the other properties, at the toy sizes above ---------

MODEL_EXAMPLES = {"ci": 50, "mutate": 50, "thorough": 1000, "dev": 20}
# whole models compared to rounding start at d_model 4: at 2 a norm over two channels amplifies rounding
# without bound (specs/tolerances.json, model_float64); d_model 2 stays in every other property
PRECISE = 4


def hypothesis_profile() -> str:
    """HYPOTHESIS_PROFILE, else `ci` where CI is set (CI services set it; tox passes it), else `dev`."""
    return os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")


def model_properties(share: float = 1.0) -> settings:
    """The loaded profile with `share` of MODEL_EXAMPLES[profile] examples (purity, a structural property: 0.4; call
    it in the decorator: the profile is loaded by then)."""
    return settings(settings.default, max_examples=round(share * MODEL_EXAMPLES.get(hypothesis_profile(), 20)))


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
        x = (
            rng.standard_normal(L)
            if kind == "noise"
            else np.sin(rng.uniform(0.001, 1.0) * np.arange(L) + rng.uniform(0, 6.3))
        )
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


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def device() -> torch.device:
    """The device under test: SASHIMI_TEST_DEVICE (tox -e gpu sets cuda), else CPU."""
    name = os.environ.get("SASHIMI_TEST_DEVICE", "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("SASHIMI_TEST_DEVICE=cuda but no CUDA device is available")
    return torch.device(name)


@pytest.fixture
def fixture_a() -> dict:
    """The published standalone model's outputs (tests/published/standalone_small.*, in every clone)."""
    return dict(np.load(PUBLISHED / "standalone_small.npz"))


@pytest.fixture(scope="session")
def audio_folder(tmp_path_factory) -> Path:
    """36 synthetic clips of 0.25 s, written once per test process."""
    folder = tmp_path_factory.mktemp("audio")
    write_synthetic_dataset(folder, n_clips=36, seconds=0.25)
    return folder


@pytest.fixture(scope="session")
def trained(tmp_path_factory, audio_folder) -> Path:
    """A run folder of the tiny preset trained 6 steps on `audio_folder`."""
    root = tmp_path_factory.mktemp("trained")
    return train(train_config(audio_folder, root / "runs", max_steps=6, eval_every=6, eval_batches=100))


# --- training runs and commands ---------------------------------------------------------------


def train_config(folder: Path, out: Path, **overrides) -> TrainConfig:
    base = dict(
        preset="tiny",
        data=str(folder),
        seq_len=256,
        batch_size=4,
        max_steps=8,
        max_minutes=None,
        out=str(out),
        eval_every=4,
        eval_batches=2,
        sample_seconds=0.0,
        device="cpu",
    )
    return TrainConfig(**{**base, **overrides})


def losses(run_dir: Path, kind: str = "train") -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["kind"] == kind}


def run_main(module, argv, capsys):
    code = module.main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_line_error(code, err, *needles):
    assert code != 0
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def write(path: Path, audio: np.ndarray, rate: int = 16000, subtype: str = "FLOAT") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate, subtype=subtype)
    return path


def wav_with_rate(path: Path, rate: int) -> Path:
    """A valid 16-bit WAV whose header claims `rate` Hz (soundfile refuses to write such rates)."""
    data = bytearray(write(path, np.sin(np.arange(400) / 5), 16000, "PCM_16").read_bytes())
    assert data[24:28] == struct.pack("<I", 16000)
    data[24:28], data[28:32] = struct.pack("<I", rate), struct.pack("<I", (2 * rate) % 2**32)
    path.write_bytes(bytes(data))
    return path


# --- sampling: the tempered nucleus distribution and its likelihoods, apart from sashimi.sampling ---


def teacher_forced_loglik(
    model, sequences: torch.Tensor, n_prefix: int, temperature: float, top_p: float
) -> np.ndarray:
    """`reference.sampling.sequence_log_likelihood` of each sequence after its first n_prefix tokens,
    from the logits of one convolution-mode forward pass of a float64 copy of `model` over
    [z, sequence[:-1]], z = 2^(bits-1); padded at the end to the pooling multiple (the model is causal)."""
    model64 = copy.deepcopy(model).double().eval().cpu()
    z = 2 ** (model.config.bits - 1)
    x = torch.cat([torch.full((sequences.shape[0], 1), z), sequences[:, :-1].cpu()], 1)
    x = torch.nn.functional.pad(x, (0, -x.shape[1] % math.prod(model.config.pool)), value=z)
    with torch.no_grad():
        logits = model64(x)[:, : sequences.shape[1]].numpy()
    return ref_sampling.sequence_log_likelihood(logits, sequences.cpu().numpy(), n_prefix, temperature, top_p)


# --- the official pipeline's layout, written from our model (tests/io/test_pipeline.py) --------


def pipeline_layout(state: dict, layout: str, seed: int = 0) -> dict:
    """`reference.pipeline.pipeline_layout` as tensors, as torch.load of the pipeline's checkpoint gives them."""
    written = ref_pipeline.pipeline_layout(state, layout, seed)
    return {key: torch.from_numpy(np.array(value)) for key, value in written.items()}  # a 0-d array stays 0-d


def random_pipeline_state(keys: dict, seed: int = 0) -> dict:
    """Random values for a pipeline key set {key: [shape, dtype]} (tests/published/sc09_*_keys.json),
    in plausible ranges: Delta in [1e-3, 1e-1] under exp, Re Lambda about -1/2, C~ for the
    stage's full length (16000 / 4000 / 1000 at widths 64 / 128 / 256), norms near identity."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, (shape, _dtype) in keys.items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf in ("l_kernel", "L"):
            width = keys[key.rsplit(".", 1)[0] + ".C"][0][1]
            out[key] = torch.tensor({64: 16000, 128: 4000, 256: 1000}.get(width, 1000))
            continue
        if leaf in ("inv_dt", "log_dt"):
            value = np.log(rng.uniform(1e-3, 1e-1, shape))
        elif leaf in ("A_real", "inv_w_real"):
            value = np.log(0.5) + 0.1 * rng.standard_normal(shape)
        elif leaf in ("A_imag", "w_imag"):
            value = np.pi * np.broadcast_to(np.arange(shape[-1]), shape) * (-1 if leaf == "w_imag" else 1)
        elif leaf in ("s", "weight_g"):
            value = rng.uniform(0.8, 1.2, shape)
        elif leaf in ("m", "bias"):
            value = 0.05 * rng.standard_normal(shape)
        else:
            fan_in = shape[-1] if len(shape) == 2 else 1
            value = rng.standard_normal(shape) / np.sqrt(fan_in) * (0.5 if len(shape) != 2 else 1.0)
        out[key] = torch.from_numpy(np.ascontiguousarray(value)).float()
    return out

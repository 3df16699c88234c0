"""The whole SaShiMi language model: shapes, exact parameter counts, causality, step == convolution,
fast vs reference, bad input, a pure step, and dropout (eval: none, in both modes; train: random)."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxtyping import TypeCheckError

import specs
from reference import sashimi as ref
from sashimi.core import config
from sashimi.core.config import DT_TRANSFORMS, NORMS, S4_OUTPUTS
from sashimi.harness.verdict import assert_close
from sashimi.model.blocks import FFLayer
from sashimi.model.lm import SashimiLM
from sashimi.model.s4 import S4Layer
from tests import helpers
from tests.helpers import (
    MODEL_EXAMPLES,
    model_properties,
    rollout,
    seeds,
    small_model_configs,
    tokens,
)
from tests.model import purity


@given(small_model_configs(), st.integers(1, 3), st.integers(1, 3), st.sampled_from([None, 0, 1, 2]), seeds)
def test_shapes_every_l_output(config, B, blocks, l_output, seed):
    model = helpers.lm(seed, torch.float32, randomize=False, l_output=l_output, **config)
    L = blocks * math.prod(config["pool"])
    C = 2 ** config["bits"]
    with torch.no_grad():
        x = tokens(seed, B, L, C)
        out = model(x)
        out_3d = model(x[..., None])
    expected = {None: (B, L, C), 0: (B, C)}.get(l_output, (B, l_output, C))
    assert out.shape == expected and out_3d.shape == expected
    assert torch.equal(out, out_3d)


@pytest.mark.parametrize("entry", specs.load("params")["exact"], ids=lambda e: e["name"])
def test_exact_parameter_counts(entry):
    model = SashimiLM(config.model_config(entry["preset"], entry["bits"], **entry["model"]))
    for part in ("backbone", "encoder", "decoder", "total"):
        if part in entry:
            assert model.num_params(None if part == "total" else part) == entry[part], part


@given(small_model_configs(bits=8), seeds, st.data())
def test_whole_model_causality(config, seed, data):
    """Changing token t changes no logit before t (and does change logits from t on)."""
    model = helpers.lm(seed, torch.float64, **config)
    L = 3 * math.prod(config["pool"])
    x = tokens(seed, 1, L, 256)
    t = data.draw(st.integers(0, L - 1))
    y = x.clone()
    y[0, t] = (x[0, t] + 1 + data.draw(st.integers(0, 250))) % 256
    with torch.no_grad():
        a, b = model(x), model(y)
    scale = float(a.abs().max()) + 1.0
    diff = (a - b).abs()
    assert t == 0 or float(diff[:, :t].max()) <= 1e-12 * scale
    assert float(diff[:, t:].max()) > 1e-9


@pytest.mark.first
@model_properties()
@given(small_model_configs(min_d_model=helpers.PRECISE), seeds, st.sampled_from(["float64", "float32"]))
def test_whole_model_step_equals_convolution(config, seed, dtype):
    """Teacher-forced generation path vs the parallel forward (mamba's test_generation, as a hard failure).
    From d_model 4 (helpers.PRECISE): a norm over 2 channels divides by |x1 - x2|, which comes arbitrarily
    close to 0, so rounding has no bound to check there (specs/tolerances.json, model_step_vs_conv_float64)."""
    dt = {"float64": torch.float64, "float32": torch.float32}[dtype]
    model = helpers.lm(seed, dt, **config)
    L = 3 * math.prod(config["pool"])
    x = tokens(seed, 2, L, 2 ** config["bits"])
    with torch.no_grad():
        conv = model(x)
    assert_close(rollout(model, x), conv, f"model_step_vs_conv_{dtype}")


def test_paper_model_step_equals_convolution_float32():
    """The paper's layout (d_model 64, N = 64, pool [4, 4]) at its HiPPO init, float32, 2 coarse blocks."""
    torch.manual_seed(0)
    model = SashimiLM(config.model_config("sc09", 8, n_layers=1))
    x = tokens(0, 1, 32, 256)
    with torch.no_grad():
        conv = model(x)
    assert_close(rollout(model, x), conv, "model_step_vs_conv_float32")


@pytest.mark.first
@model_properties()
@given(small_model_configs(min_d_model=helpers.PRECISE), seeds)
def test_whole_model_matches_reference(config, seed):
    model = helpers.lm(seed, torch.float64, **config)
    params = helpers.numpy_state(model)
    L = 2 * math.prod(config["pool"])
    x = tokens(seed, 2, L, 2 ** config["bits"])
    with torch.no_grad():
        y = model(x)
    assert_close(y, ref.language_model(params, config, x.numpy()), "model_float64")


@pytest.mark.parametrize("bits", [8, 16])
def test_token_out_of_range_names_value_position_and_C(bits):
    model = helpers.lm(0, torch.float32, randomize=False, bits=bits, d_model=2, n_layers=1, d_state=2)
    C = 2**bits
    x = tokens(0, 2, 16, C)
    x[1, 5] = C + 7
    with pytest.raises(ValueError, match=rf"\[0, {C - 1}\].*C = {C}.*got {C + 7} at position \(1, 5\)"):
        model(x)
    x[1, 5] = -1
    with pytest.raises(ValueError, match=r"got -1 at position \(1, 5\)"):
        model(x)


def test_length_not_multiple_of_pool():
    model = helpers.lm(0, torch.float32, randomize=False, d_model=2, n_layers=1, d_state=2, pool=[4, 4])
    with pytest.raises(ValueError, match=r"multiple of prod\(pool\) = 16.*got L = 20"):
        model(tokens(0, 1, 20, 256))


def test_float_tokens_are_a_type_error():
    model = helpers.lm(0, torch.float32, randomize=False, d_model=2, n_layers=1, d_state=2)
    with pytest.raises(TypeCheckError, match="parameter 'tokens'"):
        model(torch.zeros(1, 16))


def test_step_out_of_phase_is_an_error():
    """Feeding a coarse input to an UpPool that still has pending outputs is refused, not silently wrong."""
    from sashimi.model.pool import UpPool

    up = UpPool(4, 2, 2)
    state = up.default_state(1)
    with pytest.raises(RuntimeError, match="out of phase"):
        up.step(torch.zeros(1, 4), state)


@given(small_model_configs(bits=8, min_d_model=helpers.PRECISE), seeds, st.integers(1, 4))
def test_l_output_keeps_the_last_positions(config, seed, k):
    """l_output = k gives the last k positions of the full logits; 0 gives the last one, squeezed."""
    model = helpers.lm(seed, torch.float64, **config)
    L = 2 * math.prod(config["pool"])
    x = tokens(seed, 2, L, 256)
    with torch.no_grad():
        full = model(x)
        model.decoder.l_output = min(k, L)
        assert_close(model(x), full[:, -min(k, L) :], "model_float64")  # another GEMM shape: rounding only
        model.decoder.l_output = 0
        assert_close(model(x), full[:, -1], "model_float64")


@model_properties(0.4)
@given(small_model_configs(bits=8, dropout=True), seeds)
def test_step_leaves_the_callers_state_and_the_weights_untouched(config, seed):
    """SashimiLM.step at every position of one coarsest block and one more step: the caller's state is unchanged, a
    second step
    from it gives the same logits and new state (eval mode, dropout > 0 configured), and no weight moves."""
    model = helpers.lm(seed, torch.float64, **config).eval()
    L = math.prod(config["pool"]) + 1  # every pool phase, the first coarse step and the first refilled UpPool output
    x = tokens(seed, 2, L, 256)
    purity.assert_rollout_is_pure(model, x)


@model_properties(0.4)  # a structural property (as purity): 20 draws in ci
@given(small_model_configs(bits=8, dropout=True), seeds)
def test_eval_with_dropout_is_deterministic_and_equals_dropout_zero(config, seed):
    """In eval mode a model with dropout p > 0 gives, call after call, exactly the logits of the same weights
    built with dropout 0, in convolution mode and in step mode."""
    model = helpers.lm(seed, torch.float64, **config).eval()
    plain = helpers.lm(seed, torch.float64, randomize=False, **{**config, "dropout": 0.0}).eval()
    plain.load_state_dict(model.state_dict())
    L = math.prod(config["pool"])
    x = tokens(seed, 2, 2 * L, 256)
    with torch.no_grad():
        expected = plain(x)
        assert torch.equal(model(x), expected) and torch.equal(model(x), expected)
        expected_step = rollout(plain, x[:, :L])
    # a dropout active in step mode would draw a mask at every step: equality with the plain rollout rules it out
    assert torch.equal(rollout(model, x[:, :L]), expected_step)


@given(small_model_configs(bits=8, dropout=True), seeds)
def test_train_with_dropout_is_random_and_follows_the_torch_generator(config, seed):
    """In train mode with dropout p > 0 two forwards from different generator states differ, and the same
    generator state gives the same logits (the randomness is torch's, nothing else)."""
    model = helpers.lm(seed, torch.float64, **config).train()
    L = 2 * math.prod(config["pool"])
    x = tokens(seed, 2, L, 256)
    with torch.no_grad():
        torch.manual_seed(seed)
        first = model(x)
        second = model(x)
        torch.manual_seed(seed)
        again = model(x)
    assert not torch.equal(first, second)
    assert torch.equal(first, again)


def test_the_model_properties_draw_every_variant():
    """The configurations the model properties draw in CI (the derandomized `ci` profile, MODEL_EXAMPLES
    of them) reach every variant the model supports: each norm x Delta transform x S4 output, n_ssm
    None, 1 and another divisor, every pool layout, bits x expand x ff, dropout rates, depths."""
    seen = []

    @settings(settings.get_profile("ci"), max_examples=MODEL_EXAMPLES["ci"], database=None)
    @given(small_model_configs(dropout=True))
    def collect(config):
        seen.append(config)

    collect()
    assert {(c["norm"], c["dt_transform"], c["s4_output"]) for c in seen} == set(
        itertools.product(NORMS, DT_TRANSFORMS, S4_OUTPUTS)
    )
    assert {"none" if c["n_ssm"] is None else "one" if c["n_ssm"] == 1 else "divisor" for c in seen} == {
        "none",
        "one",
        "divisor",
    }
    assert {str(c["pool"]) for c in seen} == {"[2, 2]", "[4, 4]", "[2, 3]", "[3, 2]", "[3, 3]"}
    assert {(c["bits"], c["expand"], c["ff"]) for c in seen} == set(itertools.product((8, 16), (1, 2), (0, 2)))
    assert {c["dropout"] for c in seen} == {0.1, 0.25, 0.5} and {c["n_layers"] for c in seen} == {1, 2}


@pytest.mark.parametrize("ff", [0, 1, 2])
def test_ff_0_builds_no_feed_forward_blocks_and_otherwise_one_after_each_s4_block(ff):
    """The paper's stage: n_layers times (S4 block, then an FF block of expansion ff when ff > 0)."""
    model = SashimiLM(config.ModelConfig(d_model=4, n_layers=2, pool=[2, 2], expand=2, ff=ff, d_state=4))
    layers = [type(m) for m in model.modules() if isinstance(m, (S4Layer, FFLayer))]
    assert layers.count(S4Layer) == 2 * 3  # the centre and one stage per up level: the down path only pools
    assert layers == ([S4Layer, FFLayer] * 6 if ff else [S4Layer] * 6)

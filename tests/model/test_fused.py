"""The fused step (generation's fast path) against its oracles: the modules' own step and the
convolution-mode forward, on random weights and configurations; compiled against eager; purity,
errors and the fallback when compiling fails."""

import contextlib
import dataclasses
import math
import time
import types
import warnings
from unittest import mock

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from jaxtyping import TypeCheckError, jaxtyped

from sashimi.core.shapes import Float, Tensor
from sashimi.harness.verdict import assert_close
from sashimi.model import fused
from sashimi.model.fused import FusedStep, compiler_available
from sashimi.sampling.sample import sample
from tests import helpers
from tests.helpers import model_properties, seeds, small_model_configs, tokens
from tests.model.weights import randomized

needs_compiler = pytest.mark.skipif(
    not compiler_available(), reason="torch.compile's CPU backend needs a C++ compiler on PATH"
)


CHECKED = ("apply_norm", "s4_recurrence", "run_blocks", "depth_step")


def shape_checked(fn):
    """A copy of a compiled-path function without its `no_type_check` mark, checked by jaxtyping +
    beartype as the import hook checks the rest of the package."""
    from beartype import beartype

    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__annotations__, copy.__doc__ = fn.__annotations__, fn.__doc__
    return jaxtyped(typechecker=beartype)(copy)


@contextlib.contextmanager
def eager_checks():
    """The fused step's functions (kept unchecked for torch.compile) with their shape annotations
    enforced, for eager runs in the tests: a function that returns or takes a wrong shape fails here."""
    with mock.patch.multiple(fused, **{name: shape_checked(getattr(fused, name)) for name in CHECKED}):
        yield


def fused_rollout(model, x: torch.Tensor, compile: bool = False) -> torch.Tensor:
    model.setup_step()
    step = FusedStep(model, x.shape[0], compile=compile)
    with torch.no_grad():
        return torch.stack([step.step(x[:, t]) for t in range(x.shape[1])], 1)


@pytest.mark.first
@model_properties()
@given(small_model_configs(min_d_model=helpers.PRECISE), seeds, st.integers(1, 3))
def test_fused_step_equals_convolution(config, seed, batch):
    """Teacher-forced logits of the fused step vs the parallel forward (float64: another algorithm,
    within the whole-model step row), over 3 coarse blocks so that every depth runs and refills its
    finer one more than once. Against the modules' step: the paper layout below (and test_lm's
    property holds the modules' step to the forward on the same draws)."""
    model = randomized(seed, torch.float64, **config)
    L = 3 * math.prod(config["pool"])
    x = tokens(seed, batch, L, 2 ** config["bits"])
    got = fused_rollout(model, x)
    with torch.no_grad():
        assert_close(got, model(x), "model_step_vs_conv_float64")


@given(small_model_configs(), seeds, st.integers(1, 3))
def test_fused_functions_keep_their_shapes_in_eager_mode(config, seed, batch):
    """The fused step's functions with their shape annotations enforced (eager_checks) over random
    configurations: every depth's inputs, states and outputs have the declared shapes."""
    model = randomized(seed, torch.float64, **config)
    x = tokens(seed, batch, 2 * math.prod(config["pool"]), 2 ** config["bits"])
    with eager_checks():
        assert fused_rollout(model, x).shape == (batch, x.shape[1], 2 ** config["bits"])


def bad_recurrence(
    u: Float[Tensor, "B H"], state: Float[Tensor, "B 2 H N2"], *coefficients: Float[Tensor, "H N2"]
) -> tuple[Float[Tensor, "B H"], Float[Tensor, "B 2 H N2"]]:
    """A wrong s4_recurrence: y left unsummed over the state, (B, H, N2) where (B, H) is declared."""
    return state[:, 0], state


def test_the_eager_checks_see_the_fused_functions():
    """The checked copies refuse a state whose H disagrees with u's, and FusedStep runs them: a
    recurrence returning the wrong shape fails at its own return, named."""
    u, coefficients = torch.randn(2, 3), [torch.randn(3, 4) for _ in range(10)]
    with eager_checks():
        fused.s4_recurrence(u, torch.randn(2, 2, 3, 4), *coefficients)
        with pytest.raises(TypeCheckError, match="state"):
            fused.s4_recurrence(u, torch.randn(2, 2, 4, 4), *coefficients)
    model = randomized(0, torch.float64, **dataclasses.asdict(helpers.tiny_config(8)))
    with eager_checks(), mock.patch.object(fused, "s4_recurrence", shape_checked(bad_recurrence)):
        with pytest.raises(TypeCheckError, match="bad_recurrence"):
            fused_rollout(model, tokens(0, 1, 4, 256))


def test_fused_step_equals_module_step_for_the_paper_layout_float32():
    """The paper layout (d_model 64, N 64, pool [4, 4], 8 layers per stage) at init, float32."""
    model = randomized(
        0, torch.float32, bits=8, d_model=64, n_layers=8, pool=[4, 4], expand=2, ff=2, n_ssm=1, d_state=64
    )
    x = tokens(0, 2, 40, 256)
    assert_close(fused_rollout(model, x), helpers.rollout(model, x), "fused_vs_module_step_float32")


@model_properties(0.4)
@given(small_model_configs(bits=8), seeds)
def test_fused_step_leaves_the_model_untouched(config, seed):
    model = randomized(seed, torch.float64, **config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused_rollout(model, tokens(seed, 1, 2 * math.prod(config["pool"]), 256))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_warm_up_changes_nothing():
    """warm_up runs every depth's function once and keeps none of it: the logits that follow are a fresh step's."""
    model = randomized(1, torch.float64, **dataclasses.asdict(helpers.tiny_config(8)))
    x = tokens(1, 2, 12, 256)
    model.setup_step()
    warmed = FusedStep(model, 2)
    warmed.warm_up()
    with torch.no_grad():
        got = torch.stack([warmed.step(x[:, t]) for t in range(12)], 1)
    assert torch.equal(got, fused_rollout(model, x))


def test_bad_tokens_and_missing_setup_are_named():
    model = randomized(2, torch.float32, **dataclasses.asdict(helpers.tiny_config(8)))
    with pytest.raises(RuntimeError, match="setup_step"):
        FusedStep(model, 1)
    model.setup_step()
    step = FusedStep(model, 2)
    with pytest.raises(ValueError, match=r"one token per sequence, shape \(2,\); got \(3,\)"):
        step.step(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="256"):
        step.step(torch.tensor([0, 256]))


def test_a_block_layer_it_does_not_know_is_named():
    """A block holding a layer FusedStep has no layout for (neither S4 nor FF): one TypeError naming
    its class, not a step that skips the block."""

    class Gated(torch.nn.Module):
        def forward(self, x):
            return x

    model = randomized(2, torch.float32, **dataclasses.asdict(helpers.tiny_config(8)))
    model.setup_step()
    block = next(m for m in model.modules() if hasattr(m, "layer") and hasattr(m, "checkpoint"))
    block.layer = Gated()
    with pytest.raises(TypeError, match="FusedStep: unknown block layer Gated"):
        FusedStep(model, 1)


@needs_compiler
@pytest.mark.nightly  # 20-30 s in torch.compile (the opt-in compile=True path); make test keeps its 3 minutes
def test_compiled_step_equals_eager_step():
    """The compiled depth functions vs the same functions run eagerly, float32, over 3 coarse blocks."""
    model = randomized(3, torch.float32, bits=8, d_model=8, n_layers=1, pool=[2, 2], expand=2, ff=2, n_ssm=1, d_state=8)
    x = tokens(3, 2, 12, 256)
    assert_close(fused_rollout(model, x, compile=True), fused_rollout(model, x), "fused_compiled_vs_eager_float32")


def test_a_failing_compile_warns_and_runs_eagerly(monkeypatch):
    """Where torch.compile cannot build (no headers, an unsupported op), generation still runs, eagerly, and says so."""

    def broken(module, **kwargs):
        def call(*args):
            raise RuntimeError("no compiler here\nsecond line")

        return call

    monkeypatch.setattr(fused.torch, "compile", broken)
    monkeypatch.setattr(fused, "COMPILED", {})  # not a layout compiled by an earlier test
    model = randomized(4, torch.float64, **dataclasses.asdict(helpers.tiny_config(8)))
    x = tokens(4, 1, 8, 256)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = fused_rollout(model, x, compile=True)
    assert any("torch.compile failed (RuntimeError: no compiler here)" in str(w.message) for w in caught)
    assert torch.equal(got, fused_rollout(model, x))


@pytest.mark.parametrize("compile", [False, "auto"])
def test_sample_paths_choose_by_the_rule(compile, monkeypatch):
    """sample(compile=...) uses the fused step exactly when asked to, or under "auto" (where the native step
    is not available) from COMPILE_MIN_STEPS on."""
    built = []
    monkeypatch.setattr(
        "sashimi.sampling.sample.FusedStep", lambda *a, **k: built.append(k) or FusedStep(*a, compile=False)
    )
    monkeypatch.setattr("sashimi.sampling.sample.COMPILE_MIN_STEPS", 6)
    monkeypatch.setattr("sashimi.sampling.sample.native.available", lambda: False)  # the rule without it
    model = randomized(5, torch.float32, **dataclasses.asdict(helpers.tiny_config(8)))
    sample(model, 1, 5, compile=compile)
    assert built == []
    sample(model, 1, 6, compile=compile)
    assert built == ([{"compile": True}] if compile == "auto" and compiler_available() else [])


def test_sample_through_the_fused_step_draws_what_the_module_step_draws(monkeypatch):
    """The same seed gives the same tokens and log-likelihoods through either path (float64: no draw sits
    within rounding of a boundary here)."""
    monkeypatch.setattr("sashimi.sampling.sample.FusedStep", lambda *a, **k: FusedStep(*a, compile=False))
    model = randomized(6, torch.float64, **dataclasses.asdict(helpers.tiny_config(8)))
    prefix = tokens(6, 1, 5, 256)[0]
    fast = sample(model, 3, 30, temperature=0.8, top_p=0.9, prefix=prefix, seed=1, compile=True)
    plain = sample(model, 3, 30, temperature=0.8, top_p=0.9, prefix=prefix, seed=1, compile=False)
    assert torch.equal(fast[0], plain[0])
    assert_close(fast[1], plain[1], "fused_vs_module_step_float64")


@pytest.mark.nightly  # compiles (4 s): the scheduled job's, with the other torch.compile tests
def test_compiling_past_the_time_limit_leaves_the_other_depths_uncompiled(monkeypatch):
    """A compile that runs past the limit (a loaded machine): warm_up stops compiling, the depths not
    reached yet run uncompiled, it says so, and the logits are the uncompiled ones."""
    compiled_calls = []

    def slow(module, **kwargs):
        def call(*args):
            compiled_calls.append(module)
            time.sleep(0.3)  # as if compiling
            return module(*args)

        return call

    monkeypatch.setattr(fused.torch, "compile", slow)
    monkeypatch.setattr(fused, "COMPILED", {})  # not a layout compiled by an earlier test
    model = randomized(7, torch.float64, **dataclasses.asdict(helpers.tiny_config(8)))
    K = len(model.config.pool)
    model.setup_step()
    step = FusedStep(model, 2, compile=True)
    notices = []
    step.warm_up(time_limit=0.2, log=notices.append)
    assert len(compiled_calls) == 1  # depth 0 "compiled" in 0.3 s; past 0.2 s the rest is not
    assert step.functions[1:] == [fused.depth_step] * K and step.functions[0] is not fused.depth_step
    assert (
        len(notices) == 1 and f"over the limit of 0.2 s: depths 1 to {K} (of 0 to {K}) run uncompiled" in notices[0]
    ), notices
    x = tokens(7, 2, 12, 256)
    with torch.no_grad():
        got = torch.stack([step.step(x[:, t]) for t in range(12)], 1)
    assert torch.equal(got, fused_rollout(model, x))


def test_sample_with_a_tiny_compile_limit_runs_uncompiled_and_says_so():
    model = randomized(8, torch.float64, **dataclasses.asdict(helpers.tiny_config(8)))
    notices = []
    fast = sample(model, 2, 20, seed=2, compile=True, compile_time_limit=0.0, log=notices.append)
    assert any("over the limit of 0 s: depths 0 to" in n for n in notices), notices
    plain = sample(model, 2, 20, seed=2, compile=False)
    assert torch.equal(fast[0], plain[0])

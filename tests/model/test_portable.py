"""The portable step (what `export` writes as ONNX): every depth at every sample, its results kept
where the fused step runs it. Against the convolution-mode forward (another algorithm) over random
configurations, and the fused step's own numbers exactly."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sashimi.harness.verdict import assert_close
from sashimi.model.fused import FusedStep
from sashimi.model.portable import PortableStep, run
from tests import helpers
from tests.helpers import model_properties, seeds, small_model_configs, tokens
from tests.model.weights import randomized


@model_properties(0.1)  # the exact equality with the fused step needs few draws; one and three depths below
@given(small_model_configs(min_d_model=helpers.PRECISE), seeds, st.integers(1, 3))
def test_the_portable_step_is_the_convolution_and_the_fused_steps_numbers(config, seed, batch):
    """Over 3 coarse blocks and a part of one (every depth runs, refills its finer one more than once,
    and stops mid-block), from the initial state the step builds itself."""
    model = randomized(seed, torch.float64, **config)
    L = 3 * math.prod(config["pool"])
    x = tokens(seed, batch, L + config["pool"][0] + 1, 2 ** config["bits"])
    model.setup_step()
    step = PortableStep(model)
    with torch.no_grad():
        got = run(step, x)
        assert_close(got[:, :L], model(x[:, :L]), "model_step_vs_conv_float64")  # the forward takes whole blocks
        fused = FusedStep(model, batch)
        assert torch.equal(got, torch.stack([fused.step(x[:, t]) for t in range(x.shape[1])], 1))


@pytest.mark.parametrize("pool", [[3], [2, 3, 2]], ids=["one depth", "three depths"])
def test_one_and_three_pooled_depths(pool):
    """The drawn configurations have two pools: one and three, with uneven sizes, past three coarse blocks."""
    config = {**helpers.tiny_config(8).to_dict(), "pool": pool, "d_model": 4}
    model = randomized(5, torch.float64, **config)
    L = 3 * math.prod(pool)
    x = tokens(5, 2, L + 1, 256)
    model.setup_step()
    step = PortableStep(model)
    assert step.state_names()[1 : 1 + len(pool)] == [f"buffer_{d}" for d in range(len(pool))]
    with torch.no_grad():
        got = run(step, x)
        assert_close(got[:, :L], model(x[:, :L]), "model_step_vs_conv_float64")
        fused = FusedStep(model, 2)
        assert torch.equal(got, torch.stack([fused.step(x[:, t]) for t in range(x.shape[1])], 1))


def test_the_state_is_named_in_order_and_counts_the_samples():
    model = randomized(0, torch.float32, **helpers.tiny_config(8).to_dict())
    model.setup_step()
    step = PortableStep(model)
    K = len(model.backbone.pool)
    assert step.state_names() == [
        "t",
        "buffer_0",
        "buffer_1",
        "pending_0",
        "pending_1",
        "state_0",
        "state_1",
        "state_2",
    ]
    state = step.initial_state(3)
    assert state[0].dtype == torch.long and state[0].shape == () and all(not s.any() for s in state)
    widths = [model.config.d_model * model.config.expand**d for d in range(K + 1)]
    assert [s.shape for s in state[1 : 1 + K]] == [(3, widths[d], model.backbone.pool[d]) for d in range(K)]
    pending = state[1 + K : 1 + 2 * K]
    assert [s.shape for s in pending] == [(3, widths[d], model.backbone.pool[d]) for d in range(K)]
    n_s4, n2 = model.config.n_layers, model.config.d_state // 2  # one S4 block per layer at every depth
    assert [s.shape for s in state[1 + 2 * K :]] == [(3, n_s4, 2, widths[d], n2) for d in range(K + 1)]
    with torch.no_grad():
        logits, t, *_ = step(torch.zeros(3, dtype=torch.long), *state)
        assert logits.shape == (3, 256) and t == 1

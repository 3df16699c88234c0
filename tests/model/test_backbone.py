"""The backbone's step path: a pure function of (input, state), at every phase of the pools."""

import math

import torch
from hypothesis import given

from tests import helpers
from tests.helpers import model_properties, randn, seeds, small_model_configs
from tests.model import purity


@model_properties(0.4)
@given(small_model_configs(bits=8, dropout=True), seeds)
def test_step_leaves_the_callers_state_and_the_weights_untouched(config, seed):
    """Over one coarsest block and one more step (every pool buffer empty, filling, full; every up stage idle or
    running):
    Backbone.step leaves the state it was given as it was, a second step from it gives the same output and
    new state (in eval mode, with dropout > 0 configured), and no parameter or buffer changes."""
    backbone = helpers.lm(seed, torch.float64, **config).backbone.eval()
    L = math.prod(config["pool"]) + 1  # every pool phase, the first coarse step and the first refilled UpPool output
    x = randn(seed, 2, L, config["d_model"])
    purity.assert_rollout_is_pure(backbone, x)

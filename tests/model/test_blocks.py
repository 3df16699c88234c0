"""Residual blocks: activation checkpointing changes neither values nor gradients; channel dropout drops whole
channels, rescaled, only in training."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from sashimi.harness.verdict import assert_close
from sashimi.model.blocks import ChannelDropout
from tests import helpers
from tests.helpers import randn, seeds, tokens


@given(seeds)
def test_checkpointed_blocks_give_the_same_gradients(seed):
    model = helpers.lm(seed, torch.float64, d_model=4, n_layers=1, pool=[2, 2], expand=2, ff=2, n_ssm=1, d_state=4)
    x = tokens(seed, 1, 8, 256)
    grads = []
    for checkpointing in (True, False):
        for module in model.modules():
            if hasattr(module, "checkpoint") and not callable(module.checkpoint):
                module.checkpoint = checkpointing
        model.zero_grad()
        model(x).logsumexp(-1).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        assert_close(grads[0][name], grads[1][name], "model_float64")


@given(seeds, st.sampled_from([0.25, 0.5]), st.integers(2, 6), st.integers(2, 8))
def test_channel_dropout_drops_whole_channels_rescaled_in_training_only(seed, p, L, H):
    """Train: each (batch, channel) row over all positions is either all 0 or x / (1 - p), and both occur
    (64 rows); eval: the input itself."""
    x = randn(seed, 64, L, H) + 3.0  # no exact zeros in x
    dropout = ChannelDropout(p)
    torch.manual_seed(seed)
    y = dropout(x)
    dropped = (y == 0).all(dim=1)  # (B, H)
    kept = ~dropped
    assert bool(dropped.any()) and bool(kept.any())
    assert bool((y != 0).all(dim=1)[kept].all()), "a kept channel lost some positions"
    assert_close(y.transpose(1, 2)[kept], x.transpose(1, 2)[kept] / (1 - p), "layer_float64")
    assert torch.equal(dropout.eval()(x), x)

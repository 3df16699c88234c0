"""Residual blocks: activation checkpointing changes neither values nor gradients."""

import torch
from hypothesis import given

from sashimi.harness.verdict import assert_close
from tests import helpers
from tests.helpers import seeds, tokens


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

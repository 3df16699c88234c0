"""Residual blocks: activation checkpointing changes neither values nor gradients; channel dropout drops whole
channels, rescaled, only in training; the pipeline's scalar norm by hand."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from sashimi.harness.verdict import assert_close
from sashimi.model import blocks
from sashimi.model.blocks import ChannelDropout, ScalarNorm
from sashimi.model.kernel import SSMKernel
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


def test_scalar_norm_by_hand():
    """x = (1, 3, 5): mu = 3, population sigma = sqrt(8/3); y = (s / sigma) (x - mu + m), no epsilon."""
    norm = ScalarNorm().double()
    with torch.no_grad():
        norm.m.fill_(0.5)
        norm.s.fill_(2.0)
    y = norm(torch.tensor([[1.0, 3.0, 5.0]], dtype=torch.float64))
    sigma = (8 / 3) ** 0.5
    expected = torch.tensor([[2 * (-2 + 0.5) / sigma, 2 * 0.5 / sigma, 2 * 2.5 / sigma]], dtype=torch.float64)
    assert torch.allclose(y, expected, rtol=1e-15, atol=0)


def test_softplus_kernel_starts_in_the_exp_kernels_delta_range():
    """softplus(inv_dt) at init equals exp(inv_dt) of the same draw: both variants start with Delta in [1e-3, 1e-1]."""
    torch.manual_seed(0)
    a = SSMKernel(4, N=4, dt_transform="exp")
    torch.manual_seed(0)
    b = SSMKernel(4, N=4, dt_transform="softplus")
    dt_exp, dt_softplus = a.ssm_parameters()[0].detach(), b.ssm_parameters()[0].detach()
    assert torch.allclose(dt_exp, dt_softplus, rtol=1e-5)
    assert float(dt_exp.min()) >= 1e-3 and float(dt_exp.max()) <= 1e-1


def test_a_block_checkpoints_only_when_a_gradient_will_flow(monkeypatch):
    """Checkpointing pays an extra forward to save memory for backward: on when grad mode is on and
    the input or the block's parameters need a gradient; off under no_grad, for a frozen block fed
    a plain tensor, and when switched off. Counted at the checkpoint call itself."""
    calls, real = [], blocks.checkpoint
    monkeypatch.setattr(blocks, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    block = blocks.ff_block(4, 2, 0.0)
    x = randn(0, 2, 8, 4).float()

    def checkpointed(x) -> bool:
        calls.clear()
        block(x)
        return len(calls) == 1

    assert checkpointed(x)  # the parameters need a gradient, the input does not
    with torch.no_grad():
        assert not checkpointed(x)
    block.requires_grad_(False)
    assert not checkpointed(x)  # nothing needs a gradient
    assert checkpointed(x.clone().requires_grad_())  # the input does
    block.requires_grad_(True)
    block.checkpoint = False
    assert not checkpointed(x)

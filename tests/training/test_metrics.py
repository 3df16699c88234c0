"""The loss: chunked 16-bit cross-entropy equals the plain one."""

import torch

from sashimi.harness.verdict import assert_close
from sashimi.training import metrics


def test_chunked_16bit_loss_equals_plain_cross_entropy():
    torch.manual_seed(0)
    features = torch.randn(2, 64, 8, requires_grad=True)
    weight, bias = torch.randn(65536, 8) * 0.1, torch.randn(65536) * 0.1
    targets = torch.randint(0, 65536, (2, 64))
    targets[0, :5] = -100
    chunked, n1 = metrics.loss_sum_and_count(features, weight, bias, targets, chunked=True)
    (g_chunked,) = torch.autograd.grad(chunked, features)
    plain, n2 = metrics.loss_sum_and_count(features, weight, bias, targets, chunked=False)
    (g_plain,) = torch.autograd.grad(plain, features)
    assert n1 == n2 == 123
    assert_close(chunked / n1, plain / n2, "chunked_vs_plain_cross_entropy")
    assert_close(g_chunked, g_plain, "chunked_vs_plain_cross_entropy")

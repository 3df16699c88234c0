"""The loss and the metrics: chunked 16-bit cross-entropy equals the plain one; every metric of a
hand-built case equals its hand-computed value; evaluate's batch limit, padding and mode."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from sashimi.harness.verdict import assert_close
from sashimi.training import metrics
from tests.helpers import ROOT

IGNORE = -100

# Five positions over C = 12 classes. Each row's logits are log(w) for a permutation of the
# weights 12, 11, ..., 1 (sum 78), so softmax(target) = w_target / 78 and the target's rank is
# 13 - w_target, with no ties. The last position is padding.
C = 12
TARGET_WEIGHTS = (12, 10, 7, 1)  # ranks 1, 3, 6, 12
TARGETS = (3, 0, 11, 5)


def table_case():
    """(features (1, 5, C), identity head, targets (1, 5)): the logits are the features."""
    rows = []
    for r, (target, w_target) in enumerate(zip(TARGETS, TARGET_WEIGHTS, strict=True)):
        others = [w for w in range(C, 0, -1) if w != w_target]
        others = others[r:] + others[:r]  # a different arrangement of the other weights per row
        weights = others[:target] + [w_target] + others[target:]
        rows.append(np.log(np.array(weights, dtype=np.float64)))
    rows.append(np.zeros(C))  # padding: its logits must not count
    features = torch.tensor(np.array(rows))[None]
    targets = torch.tensor([[*TARGETS, IGNORE]])
    return features, torch.eye(C, dtype=torch.float64), torch.zeros(C, dtype=torch.float64), targets


def hand_metrics(bits: int) -> dict:
    loss = math.log(78) - math.log(12 * 10 * 7 * 1) / 4  # mean of ln(78 / w_target)
    return {
        "loss": loss,
        "bits_per_sample": loss / math.log(2),
        "bpb": loss / math.log(2) / (bits / 8),
        "perplexity": 78 / 840**0.25,
        "accuracy": 1 / 4,
        "accuracy@3": 2 / 4,
        "accuracy@5": 2 / 4,
        "accuracy@10": 3 / 4,
        "positions": 4,
    }


def test_table_case_is_what_its_comment_says():
    """The fixture itself: softmax of the target is w / 78 at the planned rank."""
    features, _, _, targets = table_case()
    p = torch.softmax(features[0, :4], -1)
    for r, (target, w) in enumerate(zip(TARGETS, TARGET_WEIGHTS, strict=True)):
        assert float(p[r, target]) == pytest.approx(w / 78, rel=1e-12)
        assert int((features[0, r] > features[0, r, target]).sum()) == 12 - w


@pytest.mark.parametrize("bits", [8, 16])
def test_metric_sums_of_a_hand_built_case_equal_the_hand_computed_values(bits):
    features, weight, bias, targets = table_case()
    sums = metrics.MetricSums(bits)
    sums.add(features, weight, bias, targets)
    result = sums.result()
    expected = hand_metrics(bits)
    assert set(result) == set(expected)
    for key in ("accuracy", "accuracy@3", "accuracy@5", "accuracy@10", "positions"):
        assert result[key] == expected[key], key  # counts: exact
    for key in ("loss", "bits_per_sample", "bpb", "perplexity"):
        assert_close(result[key], expected[key], "metrics_float32_logits")


def test_metric_sums_weight_every_position_equally_across_calls():
    """Adding the positions one at a time (any split) gives the metrics of the whole."""
    features, weight, bias, targets = table_case()
    sums = metrics.MetricSums(8)
    for r in (0, 1, 2, 3, 4):
        sums.add(features[:, r : r + 1], weight, bias, targets[:, r : r + 1])
    whole = metrics.MetricSums(8)
    whole.add(features, weight, bias, targets)
    assert sums.result()["positions"] == 4 and sums.result()["accuracy@10"] == 3 / 4
    assert_close(sums.result()["loss"], whole.result()["loss"], "metrics_float32_logits")


def test_metric_sums_of_padding_alone_is_an_error():
    features, weight, bias, _ = table_case()
    sums = metrics.MetricSums(8)
    sums.add(features, weight, bias, torch.full((1, 5), IGNORE))
    with pytest.raises(ValueError, match="no non-padding positions"):
        sums.result()


@pytest.mark.parametrize("chunked", [False, True])
def test_loss_sum_and_count_exclude_padding(chunked):
    features, weight, bias, targets = table_case()
    total, count = metrics.loss_sum_and_count(features.float(), weight.float(), bias.float(), targets, chunked=chunked)
    assert count == 4
    assert_close(float(total), 4 * hand_metrics(8)["loss"], "metrics_float32_logits")


def test_unigram_bits_of_known_histograms():
    assert metrics.unigram_bits([0, 0, 1, 1], 256) == pytest.approx(1.0, abs=1e-15)
    assert metrics.unigram_bits(np.arange(256), 256) == pytest.approx(8.0, abs=1e-12)
    assert metrics.unigram_bits(np.full(17, 5), 256) == 0.0
    # p = (1/2, 1/4, 1/4): H = 1/2 + 2/4 + 2/4 = 1.5 bits
    assert metrics.unigram_bits(torch.tensor([[7, 7], [3, 9]]), 16) == pytest.approx(1.5, abs=1e-15)


class TableModel(nn.Module):
    """A stand-in language model: the features of token t are row t of a table, the head is the
    identity, so the logits are known; it records the mode it was called in."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table
        self.decoder = nn.Module()
        self.decoder.output_transform = nn.Linear(C, C, dtype=torch.float64)
        with torch.no_grad():
            self.decoder.output_transform.weight.copy_(torch.eye(C))
            self.decoder.output_transform.bias.zero_()
        self.modes = []

    def features(self, x):
        self.modes.append(self.training)
        return self.table[x]


def table_batches():
    """Five (x, y) batches of (2, 3) tokens; a few targets are padding."""
    rng = np.random.default_rng(0)
    batches = []
    for b in range(5):
        x = torch.from_numpy(rng.integers(0, C, (2, 3)))
        y = torch.from_numpy(rng.integers(0, C, (2, 3)))
        y[b % 2, b % 3] = IGNORE
        if b == 1:
            y[1] = IGNORE
        batches.append((x, y))
    return batches


def plain_loss(table: torch.Tensor, batches) -> tuple[float, int]:
    """Mean cross-entropy over non-padding positions, in float64 NumPy."""
    logits = table.numpy()
    nll, count = 0.0, 0
    for x, y in batches:
        for t, target in zip(x.reshape(-1).tolist(), y.reshape(-1).tolist(), strict=True):
            if target != IGNORE:
                row = logits[t]
                nll += np.log(np.exp(row - row.max()).sum()) + row.max() - row[target]
                count += 1
    return nll / count, count


@pytest.mark.parametrize("k", [0, 1, 2, 5, None])
def test_evaluate_counts_exactly_max_batches_batches(k):
    table = torch.from_numpy(np.random.default_rng(1).standard_normal((C, C)))
    model, batches = TableModel(table), table_batches()
    if k == 0:
        with pytest.raises(ValueError, match="no non-padding positions"):
            metrics.evaluate(model, iter(batches), 8, torch.device("cpu"), max_batches=0)
        return
    result = metrics.evaluate(model, iter(batches), 8, torch.device("cpu"), max_batches=k)
    loss, count = plain_loss(table, batches[: 5 if k is None else k])
    assert result["positions"] == count == sum(int((y != IGNORE).sum()) for _, y in batches[: 5 if k is None else k])
    assert len(model.modes) == (5 if k is None else k)
    assert_close(result["loss"], loss, "metrics_float32_logits")


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_runs_in_eval_mode_and_restores_the_mode(training):
    model = TableModel(torch.zeros(C, C, dtype=torch.float64))
    model.train(training)
    metrics.evaluate(model, table_batches(), 8, torch.device("cpu"))
    assert model.modes == [False] * 5
    assert model.training is training


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


# One forward + backward of the training loss of a 16-bit model, in a fresh process so that its
# peak resident memory (ru_maxrss, KiB on Linux) belongs to this computation alone; the growth
# is measured from after a 64-position warm-up (kernels, allocator pools, the 65536-row head).
MEMORY_PROBE = """
import resource, sys
import torch
torch.set_num_threads(1)
from sashimi.harness.helpers import tiny_config
from sashimi.model.lm import SashimiLM
from sashimi.training.metrics import LossModel
L = int(sys.argv[1])
torch.manual_seed(0)
loss_model = LossModel(SashimiLM(tiny_config(16)))
x, y = torch.randint(0, 65536, (1, L)), torch.randint(0, 65536, (1, L))
total, count = loss_model(x[:, :64], y[:, :64])
total.backward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
total, count = loss_model(x, y)
(total / count).backward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.nightly  # 9 s of 16-bit loss under a memory probe: the nightly job (README, "Tests")
def test_16bit_training_loss_never_holds_the_full_logits_in_cpu_memory():
    """LossModel on a 16-bit model (the switch training uses) over one clip of 2048 positions.

    Full float32 logits of (1, 2048, 65536) take 512 MiB and their gradient another 512 MiB.
    Measured growth of the peak memory over the warm-up (torch 2.x, CPU, one thread): 248-257 MiB
    on the chunked path (L = 2048, 4096 and 8192 alike: one 1024-position chunk of logits at a
    time), 1526 MiB when the same model takes the plain path (3062 MiB at L = 4096). The bound,
    640 MiB, is 2.5x the chunked measurement and below the logits and their gradient alone."""
    L, bound_mib = 2048, 640
    assert 2 * L * 65536 * 4 / 2**20 > bound_mib  # the plain path could not stay under the bound
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(L)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr
    growth_mib = int(probe.stdout.split()[-1]) / 1024
    assert growth_mib < bound_mib, f"peak memory grew by {growth_mib:.0f} MiB"

"""What `sample` reports against an independent teacher-forced forward pass: the prefix primes the
state exactly as a convolution-mode pass over [z, prefix] does, and the mean log-likelihood per
generated sample is the one that pass gives under the tempered, filtered distribution
(`reference.sampling.sequence_log_likelihood` on a float64 forward pass: tests/helpers.py, `teacher_forced_loglik`)."""

import math

import numpy as np
import pytest
import torch

from sashimi.harness.verdict import tolerance_bound
from sashimi.sampling.sample import one_thread, sample, sampling_loop
from tests.helpers import lm, teacher_forced_loglik, tiny_config, tokens


def loglik_bound(temperature: float) -> float:
    """The float32 step logits may differ from the forward pass by the contract's bound d; a
    log-softmax moves by at most 2 d / temperature when its logits move by d (the nucleus being
    the same: `nucleus_log_probs` refuses rows within float32 rounding of top_p)."""
    return 2 * tolerance_bound("model_step_vs_conv_float32", 0.0) / temperature


@pytest.mark.parametrize("prefix_length, temperature, top_p", [(7, 1.0, 1.0), (5, 0.7, 0.9), (9, 1.6, 0.6)])
def test_a_prefix_primes_the_state_as_the_forward_pass_over_z_and_the_prefix(prefix_length, temperature, top_p):
    """The first generated token of 2000 draws: its reported log-likelihood equals the log-probability
    that the forward pass over [z, prefix] gives it at the last prefix position, over many classes.
    Priming without z (the prefix alone) would give other values, so the check can fail."""
    model = lm(3, torch.float32, **tiny_config(8).to_dict())
    prefix = tokens(prefix_length, 1, prefix_length, 256)[0]
    sequences, loglik = sample(model, 2000, 1, temperature, top_p, prefix=prefix, seed=5)
    assert torch.equal(sequences[:, :prefix_length], prefix.expand(2000, -1))
    assert len(sequences[:, -1].unique()) >= 50  # the comparison covers much of the distribution
    expected = teacher_forced_loglik(model, sequences, prefix_length, temperature, top_p)
    error = float(np.abs(loglik.numpy() - expected).max())
    assert error <= loglik_bound(temperature), error
    without_z = teacher_forced_loglik(model, sequences[:, 1:], prefix_length - 1, temperature, 1.0)
    assert float(np.abs(loglik.numpy() - without_z).max()) > 100 * loglik_bound(temperature)


@pytest.mark.parametrize(
    "bits, n_prefix, temperature, top_p", [(8, 0, 1.0, 1.0), (8, 5, 0.8, 0.9), (8, 3, 1.7, 0.6), (16, 4, 1.3, 1.0)]
)
def test_reported_log_likelihood_is_the_teacher_forced_mean_log_probability(bits, n_prefix, temperature, top_p):
    """Mean log-probability per generated sample of [z, prefix, generated[:-1]] in one convolution-mode
    pass, tempered and filtered in NumPy, equals `sample`'s score for every sequence."""
    model = lm(bits + n_prefix, torch.float32, **tiny_config(bits).to_dict())
    prefix = tokens(n_prefix, 1, n_prefix, 2**bits)[0] if n_prefix else None
    for seed in range(n_prefix, n_prefix + 20):  # the first draw whose every nucleus float32 decides unambiguously
        sequences, loglik = sample(model, 6, 11, temperature, top_p, prefix=prefix, seed=seed)
        try:
            expected = teacher_forced_loglik(model, sequences, n_prefix, temperature, top_p)
            break
        except ValueError:
            continue
    assert sequences.shape == (6, n_prefix + 11) and loglik.dtype == torch.float64
    error = float(np.abs(loglik.numpy() - expected).max())
    assert error <= loglik_bound(temperature), error
    assert np.ptp(expected) > 100 * loglik_bound(temperature)  # the scores tell the sequences apart


def test_zero_length_reports_zero_log_likelihood_and_returns_the_prefix():
    """No generated sample: the prefix alone, and a score of 0 (the mean over none, by convention)."""
    model = lm(0, torch.float32, **tiny_config(8).to_dict())
    prefix = tokens(1, 1, 3, 256)[0]
    sequences, loglik = sample(model, 2, 0, prefix=prefix)
    assert torch.equal(sequences, prefix.expand(2, -1)) and torch.equal(loglik, torch.zeros(2, dtype=torch.float64))


def test_the_log_likelihood_of_a_long_sample_keeps_float64_digits():
    """Uniform logits over 256 classes: every generated sample's log-probability is the same float32
    number v (about -log 256), so the mean over 2000 of them is v exactly when summed in float64 (each
    partial sum k v is exact); a float32 sum drifts from it by about 1e-7."""
    v = float(torch.zeros(256).log_softmax(-1)[0])
    assert abs(v + math.log(256)) < 1e-6

    def step(token):
        return torch.zeros(token.shape[0], 256)

    prefix, generator = torch.zeros(0, dtype=torch.long), torch.Generator().manual_seed(0)
    with one_thread():
        sequences, loglik = sampling_loop(step, 8, 3, 2000, 1.0, 1.0, prefix, generator, torch.device("cpu"), None)
    assert sequences.shape == (3, 2000) and len(sequences.unique()) == 256
    assert loglik.dtype == torch.float64 and loglik.tolist() == [v] * 3

"""The sampling distribution: tokens are drawn from softmax(logits / temperature) restricted to the
nucleus of `top_p_filter` and renormalized, checked against that distribution computed in NumPy
(tests/helpers.py, `nucleus_log_probs`) from an independent convolution-mode forward pass."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import stats

from sashimi.sampling.sample import sample, top_p_filter
from tests.helpers import lm, nucleus_log_probs, seeds, tiny_config

ALPHA = 1e-6  # false-alarm rate of each statistical assertion below
N = 20000  # draws per case: one `sample` call of N sequences of length 1


def first_step_distribution(model, temperature: float, top_p: float) -> np.ndarray:
    """The claimed distribution of the first sampled token: the float64 forward pass over [z]
    (padded with z to the pooling multiple; position 0 sees only z), tempered and filtered in NumPy."""
    z = 2 ** (model.config.bits - 1)
    with torch.no_grad():
        logits = copy.deepcopy(model).double()(torch.full((1, 4), z))[0, 0].numpy()
    return np.exp(nucleus_log_probs(logits, temperature, top_p))


def g_test(counts: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Likelihood-ratio (G) statistic of `counts` against the multinomial `p`, and its critical
    value at ALPHA; classes expected fewer than 5 times are pooled into one bin so the chi-square
    approximation holds. A draw of a class of probability 0 makes G infinite."""
    expected, observed = counts.sum() * p[p > 0], counts[p > 0]
    small = expected < 5
    if small.any():
        observed = np.append(observed[~small], observed[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    critical = float(stats.chi2.isf(ALPHA, len(expected) - 1))
    if counts[p == 0].any():
        return np.inf, critical
    nonzero = observed > 0
    return 2 * float(np.sum(observed[nonzero] * np.log(observed[nonzero] / expected[nonzero]))), critical


@pytest.mark.parametrize("temperature, top_p", [(0.5, 1.0), (1.7, 1.0), (1.0, 0.6), (1.0, 0.9), (0.5, 0.9), (1.7, 0.6)])
def test_first_sampled_token_follows_the_tempered_nucleus_distribution(temperature, top_p):
    """N draws of the first token through `sample` against the NumPy distribution: a G-test at
    false-alarm rate ALPHA = 1e-6; no class outside the nucleus is ever drawn (exact); every class
    whose chance of never being drawn is below ALPHA / C is drawn. The same counts reject the
    neighbouring claim (temperature 1, or no filter), so the test can fail."""
    model = lm(0, torch.float32, **tiny_config(8).to_dict())
    p = first_step_distribution(model, temperature, top_p)
    sequences, _ = sample(model, N, 1, temperature, top_p, seed=11)
    counts = np.bincount(sequences[:, 0].numpy(), minlength=p.size)
    assert counts[p == 0].sum() == 0, f"classes outside the nucleus drawn: {np.flatnonzero((p == 0) & (counts > 0)).tolist()}"
    g, critical = g_test(counts, p)
    assert g < critical, f"G = {g:.1f} >= {critical:.1f}: the draws do not follow the claimed distribution"
    surely_drawn = (1 - p) ** N < ALPHA / p.size
    assert (counts[surely_drawn] > 0).all(), f"classes never drawn: {np.flatnonzero(surely_drawn & (counts == 0)).tolist()}"
    g_neighbour, _ = g_test(counts, first_step_distribution(model, 1.0, top_p if temperature != 1 else 1.0))
    assert g_neighbour > critical


def test_a_nucleus_of_one_class_is_drawn_every_time_with_log_likelihood_zero():
    """top_p below the largest probability leaves one class: every draw is the most probable one."""
    model = lm(1, torch.float32, **tiny_config(8).to_dict())
    p = first_step_distribution(model, 1.0, 1.0)
    sequences, loglik = sample(model, 64, 1, top_p=0.5 * float(p.max()), seed=2)
    assert (sequences[:, 0] == int(p.argmax())).all()
    assert torch.equal(loglik, torch.zeros(64, dtype=torch.float64))  # the one class has probability 1


@given(seeds, st.sampled_from([8, 64, 256]), st.floats(0.1, 4.0), st.floats(0.01, 0.999))
def test_top_p_filter_keeps_exactly_the_nucleus_and_its_logits(seed, n_classes, scale, top_p):
    """The finite entries are the classes of the NumPy nucleus, with their logits unchanged."""
    logits = torch.from_numpy(np.random.default_rng(seed).standard_normal((3, n_classes)) * scale).float()
    try:
        expected = nucleus_log_probs(logits.numpy(), 1.0, top_p, margin=1e-5)
    except ValueError:  # a mass within float32 rounding of top_p: either nucleus would be right
        assume(False)
    filtered = top_p_filter(logits, top_p)
    inside = torch.isfinite(filtered)
    assert torch.equal(inside, torch.from_numpy(np.isfinite(expected)))
    assert torch.equal(filtered[inside], logits[inside])
    assert torch.all(filtered[~inside] == -torch.inf)

"""The float64 sampling reference against answers worked out by hand: the tempered softmax, the
nucleus it keeps and the likelihood it reports."""

import math

import numpy as np
import pytest

from reference import sampling


def test_log_probs_are_float64_even_for_float32_logits():
    """Two logits 1e-9 apart: their log-probabilities differ by exactly that, which float32 (spacing
    6e-8 near log 2) rounds away."""
    logp = sampling.nucleus_log_probs(np.array([0.0, 1e-9], dtype=np.float32), 1.0, 1.0)
    assert logp.dtype == np.float64
    logp = sampling.nucleus_log_probs(np.array([0.0, 1e-9]), 1.0, 1.0)
    assert math.isclose(logp[1] - logp[0], 1e-9, rel_tol=1e-6)
    assert math.isclose(logp[0], -math.log1p(math.exp(1e-9)), rel_tol=1e-12)


def test_the_nucleus_is_the_fewest_classes_reaching_top_p_renormalized():
    """Probabilities 0.5, 0.3, 0.2 with top_p 0.7: 0.5 alone falls short, 0.5 + 0.3 reaches it, so
    the nucleus is the first two, renormalized by 0.8. At temperature 2 (the logits halved) the
    probabilities are sqrt(p) renormalized, 0.42, 0.32, 0.26: top_p 0.75 then keeps all three."""
    logits = np.log([[0.5, 0.3, 0.2]])
    logp = sampling.nucleus_log_probs(logits, 1.0, 0.7)
    np.testing.assert_allclose(np.exp(logp), [[0.5 / 0.8, 0.3 / 0.8, 0.0]], rtol=1e-12, atol=0)
    tempered = np.sqrt([0.5, 0.3, 0.2]) / np.sqrt([0.5, 0.3, 0.2]).sum()  # softmax(logits / 2)
    logp = sampling.nucleus_log_probs(logits, 2.0, 0.75)
    assert tempered[:2].sum() < 0.75 < tempered.sum()
    np.testing.assert_allclose(np.exp(logp), [tempered], rtol=1e-12, atol=0)


def test_a_nucleus_whose_edge_lies_within_the_margin_is_refused():
    """Probabilities 0.5, 0.25, 0.25 with top_p 0.5 + 1e-6: the nucleus is two classes, but the mass
    before its last one (0.5) is within the margin of top_p, so float32 rounding could make it one:
    refused. The last class's own mass (0.75) is far from top_p and does not decide it."""
    logits = np.log([[0.5, 0.25, 0.25]])
    with pytest.raises(ValueError, match=r"nucleus of row \[0\] is ambiguous"):
        sampling.nucleus_log_probs(logits, 1.0, 0.5 + 1e-6)
    with pytest.raises(ValueError, match="ambiguous"):  # the last class's mass itself at the edge
        sampling.nucleus_log_probs(logits, 1.0, 0.75 - 1e-6)
    # the default margin is 1e-5: 0.5e-5 away is refused, 1.5e-5 away is not
    with pytest.raises(ValueError, match="ambiguous"):
        sampling.nucleus_log_probs(logits, 1.0, 0.5 + 0.5e-5)
    assert np.isfinite(sampling.nucleus_log_probs(logits, 1.0, 0.5 + 1.5e-5)[0, :2]).all()

"""What sampling should draw, and the likelihood it should report, written out in float64 NumPy.

The fast counterparts are `sashimi.sampling.sample.top_p_filter` + the tempered log-softmax (the
distribution) and the scores `sample` returns (the likelihood)."""

import numpy as np
from jaxtyping import Float, Int
from numpy import ndarray


def nucleus_log_probs(
    logits: Float[ndarray, "*rows C"], temperature: float, top_p: float, margin: float = 1e-5
) -> Float[ndarray, "*rows C"]:
    """log softmax(logits / temperature) restricted to the nucleus (the fewest classes, by descending
    probability, whose mass reaches top_p) and renormalized, -inf outside; float64, classes on the
    last axis. A row whose mass up to its last or next-to-last nucleus class lies within `margin`
    of top_p could keep another nucleus under float32 rounding: it is refused (ValueError)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    if top_p >= 1:
        return logp
    order = np.argsort(-logp, axis=-1, kind="stable")
    mass = np.cumsum(np.exp(np.take_along_axis(logp, order, -1)), -1)
    kept = np.minimum((mass < top_p).sum(-1, keepdims=True) + 1, z.shape[-1])  # smallest k with mass[k-1] >= top_p
    for k in (kept, np.maximum(kept - 1, 1)):
        near = np.abs(np.take_along_axis(mass, k - 1, -1) - top_p) < margin  # mutate: skip <= only at exactly margin
        if near.any():
            raise ValueError(
                f"nucleus of row {np.argwhere(near)[0][:-1].tolist()} is ambiguous: its mass lies within {margin} of "
                f"top_p = {top_p}"
            )
    inside = np.zeros(z.shape, dtype=bool)  # mutate: skip a 0/1 float mask selects the same
    np.put_along_axis(inside, order, np.arange(z.shape[-1]) < kept, -1)
    z = np.where(inside, z, -np.inf)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def sequence_log_likelihood(
    logits: Float[ndarray, "B T C"], sequences: Int[ndarray, "B T"], n_prefix: int, temperature: float, top_p: float
) -> Float[ndarray, " B"]:
    """Mean log-probability, under `nucleus_log_probs`, of each sequence's tokens after its first
    n_prefix, where logits[:, t] is the model's prediction of sequences[:, t]."""
    logp = nucleus_log_probs(logits[:, n_prefix:], temperature, top_p)
    return np.take_along_axis(logp, sequences[:, n_prefix:, None], -1)[..., 0].mean(-1)

"""One optimization step as training takes it, written out in float64 NumPy for a stand-in model
whose logits for token t are row t of a table: the mean cross-entropy over the non-padding
positions, its gradient by hand, the gradient clipped to a norm, AdamW with bias-corrected moments
and decoupled weight decay. The fast counterpart is `sashimi.training.optimizer.optimization_step`
(with `make_optimizer`'s AdamW)."""

import numpy as np
from jaxtyping import Float, Int
from numpy import ndarray

IGNORE_INDEX = -100


def optimization_steps(
    table: Float[ndarray, "C C"],
    batches: list[tuple[Int[ndarray, "B L"], Int[ndarray, "B L"]]],
    lr: float,
    grad_clip: float,
    betas: tuple[float, float],
    weight_decay: float,
    eps: float = 1e-8,
) -> tuple[Float[ndarray, "C C"], list[float]]:
    """The table after one step per batch, and each step's loss."""
    b1, b2 = betas
    p = np.array(table, dtype=np.float64)
    m, v, losses = np.zeros_like(p), np.zeros_like(p), []
    for t, (x, y) in enumerate(batches, start=1):
        x, y = np.asarray(x).reshape(-1), np.asarray(y).reshape(-1)  # mutate: skip NumPy takes any negative size as -1
        keep = y != IGNORE_INDEX
        rows, targets = x[keep], y[keep]
        z = p[rows] - p[rows].max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        losses.append(float(-logp[np.arange(len(targets)), targets].mean()))
        d_logits = np.exp(logp)  # d loss / d logits = (softmax - one hot) / positions
        d_logits[np.arange(len(targets)), targets] -= 1.0
        g = np.zeros_like(p)
        np.add.at(g, rows, d_logits / len(targets))
        g = g * min(1.0, grad_clip / (float(np.linalg.norm(g)) + 1e-6))  # torch's clip_grad_norm_ rule
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        p = p * (1 - lr * weight_decay) - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return p, losses

"""Models with every weight off its init, for the fused and native step tests (a test module
never imports another: tests/test_layout.py)."""

import numpy as np
import torch

from tests import helpers


def randomized(seed: int, dtype: torch.dtype, **config):
    """helpers.lm, with every norm weight and bias, D and bias also moved off their init (a swapped
    LayerNorm weight and bias would otherwise go unseen: they start at 1 and 0)."""
    model = helpers.lm(seed, dtype, **config)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1 or p.shape[0] == 1:
                p.add_(torch.from_numpy(rng.normal(0, 0.3, p.shape)).to(dtype))
    return model.eval()

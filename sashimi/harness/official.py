"""The official standalone SaShiMi, imported from a checkout of state-spaces/s4 (never copied here),
with our embedding and head around it, and its own step loop: the other side of `bench --against`."""

import sys
import time
from pathlib import Path


def official_kwargs(preset_name: str) -> dict:
    """The official Sashimi's constructor arguments for a preset (its d_state stays the official 64)."""
    from sashimi.core.config import model_config

    m = model_config(preset_name, 8)
    return dict(d_model=m.d_model, n_layers=m.n_layers, pool=list(m.pool), expand=m.expand, ff=m.ff, n_ssm=m.n_ssm)


def official_model(checkout: Path, preset_name: str = "sc09"):
    """The official standalone backbone of a preset (imported from the checkout; never copied here) with our heads."""
    import types

    import torch
    from torch import nn

    try:
        import pytorch_lightning.utilities  # noqa: F401
    except ImportError:  # the standalone file imports one logging helper from it
        utilities = types.ModuleType("pytorch_lightning.utilities")
        utilities.rank_zero_only = lambda fn: fn
        sys.modules.setdefault("pytorch_lightning", types.ModuleType("pytorch_lightning"))
        sys.modules["pytorch_lightning.utilities"] = utilities
    sys.path.insert(0, str(checkout))
    try:
        from models.sashimi.sashimi import Sashimi
    except ImportError as e:
        raise RuntimeError(
            f"cannot import models/sashimi/sashimi.py from {checkout}: {e} (the official code needs einops: pip "
            "install einops)"
        ) from None

    class OfficialLM(nn.Module):
        def __init__(self):
            super().__init__()
            kwargs = official_kwargs(preset_name)
            self.encoder = nn.Embedding(256, kwargs["d_model"])
            self.backbone = Sashimi(**kwargs)
            self.decoder = nn.Linear(kwargs["d_model"], 256)

    torch.manual_seed(0)
    return OfficialLM()


def official_forward(model, tokens):
    y = model.backbone(model.encoder(tokens))
    y = y[0] if isinstance(y, tuple) else y
    return model.decoder(y)


def official_generate(model, batch: int, steps: int, temperature: float = 1.0, top_p: float = 1.0) -> float:
    """The official step loop with our sampling; returns the setup time (setup_rnn)."""
    import torch

    from sashimi.sampling.sample import draw, top_p_filter

    start = time.perf_counter()
    model.backbone.setup_rnn("dense")
    setup = time.perf_counter() - start
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        state = model.backbone.default_state(batch)
        token = torch.full((batch,), 128, dtype=torch.long)
        for _ in range(steps):
            y, state = model.backbone.step(model.encoder(token), state)
            logp = top_p_filter(model.decoder(y).float() / temperature, top_p).log_softmax(-1)
            token = draw(logp, generator)[:, 0]
    return setup

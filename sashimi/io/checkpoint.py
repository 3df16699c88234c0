"""Checkpoints: one dictionary of plain values and tensors, written atomically, read with weights_only=True."""

import os
import tempfile
from pathlib import Path

import torch

from sashimi.core.config import ModelConfig
from sashimi.model.lm import SashimiLM


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit what it is used for."""


def save(payload: dict, path: str | os.PathLike) -> Path:
    """Write to a temporary file in the same folder, then rename: a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"cannot read checkpoint {path} (truncated or not a torch checkpoint): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise CheckpointError(f"{path} is not a sashimi checkpoint (expected a dict with 'config' and 'model')")
    return payload


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu", expect_bits: int | None = None) -> tuple[SashimiLM, dict]:
    """The model of a checkpoint, in eval mode, strictly: its weights must fit its own configuration."""
    payload = load(path, map_location=device)
    try:
        config = ModelConfig(**payload["config"]["model"])
    except (TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: its configuration is not a model configuration ({e})") from None
    if expect_bits is not None and config.bits != expect_bits:
        raise CheckpointError(f"{path} is a {config.bits}-bit model; --bits {expect_bits} was asked for")
    model = SashimiLM(config).to(device)
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as e:
        detail = " ".join(line.strip() for line in str(e).splitlines()[1:4])
        raise CheckpointError(f"{path}: weights do not fit its configuration ({config.bits}-bit, d_model {config.d_model}, "
                              f"n_layers {config.n_layers}): {detail}") from None
    return model.eval(), payload

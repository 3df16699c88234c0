"""Checkpoints: one dictionary of plain values and tensors, written atomically, read with weights_only=True."""

import os
import tempfile
from pathlib import Path

import torch

from sashimi.core.config import ModelConfig
from sashimi.model.lm import SashimiLM


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit what it is used for."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save(payload: dict, path: str | os.PathLike) -> Path:
    """Write to a temporary file in the same folder, then rename: a crash (or a full disk) never
    leaves a half-written checkpoint, and the previous one stays. The file gets the mode an
    ordinary new file would (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch reports a failed write (e.g. a full disk) as RuntimeError
        Path(tmp).unlink(missing_ok=True)
        raise CheckpointError(
            f"cannot write checkpoint {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
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
        raise CheckpointError(
            f"cannot read checkpoint {path} (truncated or not a torch checkpoint): {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise CheckpointError(f"{path} is not a sashimi checkpoint (expected a dict with 'config' and 'model')")
    return payload


def load_model(
    path: str | os.PathLike, device: torch.device | str = "cpu", expect_bits: int | None = None
) -> tuple[SashimiLM, dict]:
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
        raise CheckpointError(
            f"{path}: weights do not fit its configuration ({config.bits}-bit, d_model {config.d_model}, "
            f"n_layers {config.n_layers}): {detail}"
        ) from None
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"{path} holds non-finite weights (nan or inf in {', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): "
            "it came from a diverged run; use an earlier checkpoint"
        )
    return model.eval(), payload

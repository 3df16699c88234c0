"""Checkpoints: one dictionary of plain values and tensors, written atomically, read with weights_only=True."""

import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path

import torch

from sashimi.core.config import ModelConfig
from sashimi.model.lm import SashimiLM


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit what it is used for."""


ANSI = re.compile(r"\x1b\[[0-9;]*m")  # torch colours its advice for terminals
ENFORCE = re.compile(r"^\[enforce fail at [^\]]*\]\s*\.?\s*")  # torch's C++ source location


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_failure(e: Exception, folder: Path) -> str:
    """The cause of a failed write in words: the system's reason, or torch's message without its C++
    source location, and the space left on the folder's disk (a full disk is the usual cause)."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = ENFORCE.sub("", str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    try:
        free = f"; {shutil.disk_usage(folder).free / 1e6:,.1f} MB free on its disk (full?)"
    except OSError:
        free = ""
    return f"the write stopped short ({text}){free}"


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
        raise CheckpointError(f"cannot write checkpoint {path}: {write_failure(e, path.parent)}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def import_hint(path: Path) -> str:
    return f"a released or published model is imported first: python -m sashimi.interop import {path} --out model.pt"


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        if isinstance(e, pickle.UnpicklingError) and "weights_only" in str(e):  # a Lightning .ckpt, a pickled module
            raise CheckpointError(
                f"{path} is not a sashimi checkpoint: it holds objects the safe loader refuses; {import_hint(path)}"
            ) from None
        first = ANSI.sub("", str(e)).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"cannot read checkpoint {path} (truncated or not a torch checkpoint): {type(e).__name__}: {first}"
        ) from None
    foreign = isinstance(payload, dict) and payload and all(torch.is_tensor(v) for v in payload.values())
    if foreign or (isinstance(payload, dict) and "state_dict" in payload):
        raise CheckpointError(
            f"{path} is a state dict of another implementation, not a sashimi checkpoint; {import_hint(path)}"
        )
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

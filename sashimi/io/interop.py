"""The published implementation's state dicts mapped onto our model (docs/DESIGN.md, "Standalone state-dict layout").

The published standalone model (state-spaces/s4 `models/sashimi/sashimi.py`) has the same module
names as ours; its pool and FF linears are Conv1d with kernel size 1, so their weights carry a
trailing axis of 1, which is the one difference in layout. Its S4 `C` holds C~ for `l_kernel`
(docs/DESIGN.md, "C~ and l_kernel"), which we honour as is.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from sashimi.core.config import ModelConfig
from sashimi.io import checkpoint
from sashimi.model.backbone import Backbone
from sashimi.model.lm import SashimiLM

SUPPORTED = {"bidirectional": False, "unet": False, "glu": True}


class InteropError(Exception):
    pass


def backbone_kwargs(constructor_kwargs: dict, state: dict) -> dict:
    """Our Backbone arguments from the published constructor kwargs; n_ssm is read off A_real."""
    for key, value in SUPPORTED.items():
        if constructor_kwargs.get(key, value) != value:
            raise InteropError(f"published option {key}={constructor_kwargs[key]!r} is not supported (only {key}={value})")
    known = {"d_model", "n_layers", "pool", "expand", "ff", "dropout", "n_ssm", "d_state", *SUPPORTED}
    unknown = set(constructor_kwargs) - known
    if unknown:
        print(f"warning: ignoring published constructor arguments {sorted(unknown)}; the comparison will show whether they matter", file=sys.stderr)
    kwargs = {k: constructor_kwargs[k] for k in ("d_model", "n_layers", "pool", "expand", "ff", "dropout") if k in constructor_kwargs}
    kwargs["pool"] = tuple(kwargs.get("pool", (4, 4)))
    a_real = [v for k, v in state.items() if k.endswith("kernel.A_real")]
    if not a_real:
        raise InteropError("no S4 kernel (…kernel.A_real) in the state dict: is it a SaShiMi backbone?")
    first = next(k for k in state if k.endswith("kernel.A_real"))
    H = state[first.replace("kernel.A_real", "kernel.C")].shape[1]
    S = a_real[0].shape[0]
    kwargs["n_ssm"] = None if S == H and H > 1 else S
    if constructor_kwargs.get("n_ssm", kwargs["n_ssm"]) not in (kwargs["n_ssm"], S):
        raise InteropError(f"constructor says n_ssm={constructor_kwargs['n_ssm']} but {first} has {S} rows")
    kwargs["d_state"] = 2 * a_real[0].shape[1]
    return kwargs


def to_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def convert_state(published: dict, model: torch.nn.Module) -> dict:
    """Published state dict -> ours, strictly: every key must exist on both sides with the same
    shape (up to the trailing Conv1d axis of 1). Raises InteropError listing every mismatch."""
    ours = model.state_dict()
    missing = sorted(set(ours) - set(published))
    unexpected = sorted(set(published) - set(ours))
    mismatched, out = [], {}
    for key in sorted(set(ours) & set(published)):
        value = to_tensor(published[key])
        want = ours[key].shape
        if value.ndim == len(want) + 1 and value.shape[-1] == 1 and value.shape[:-1] == want:
            value = value[..., 0]
        if value.shape != want:
            mismatched.append(f"{key}: published {tuple(value.shape)} vs ours {tuple(want)}")
        out[key] = value.to(ours[key].dtype)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched)}")
        raise InteropError("published state dict does not fit the backbone: " + " | ".join(parts))
    return out


def load_backbone(published: dict, constructor_kwargs: dict, dtype: torch.dtype = torch.float32) -> Backbone:
    model = Backbone(**backbone_kwargs(constructor_kwargs, published)).to(dtype)
    model.load_state_dict(convert_state(published, model), strict=True)
    return model


def state_of(arrays: dict) -> dict:
    """The state dict inside a fixture: every array but the recorded inputs and outputs
    (`init.*` values before the first forward, kernels, x_input, y_*, step matrices)."""
    outputs = ("init.", "kernel.", "kernel_", "x_", "y_", "step_")
    return {k: v for k, v in arrays.items() if not k.startswith(outputs)}


def read_state_dict(path: Path) -> dict:
    if path.suffix == ".npz":
        return {k: torch.from_numpy(np.asarray(v)) for k, v in np.load(path).items()}
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InteropError(f"cannot read state dict {path}: {type(e).__name__}: {e}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InteropError(f"{path} does not hold a state dict")
    return state


def import_state_dict(state_path: Path, config_path: Path, out: Path, bits: int) -> dict:
    config = json.loads(config_path.read_text())
    kwargs = config.get("constructor_kwargs", config)
    state = read_state_dict(state_path)
    state = {k: v for k, v in state.items() if not k.startswith("init.")}
    if "x_input" in state or any(k.startswith(("y_", "kernel.", "kernel_")) for k in state):
        state = state_of(state)
    bk = backbone_kwargs(kwargs, state)
    model_config = ModelConfig(bits=bits, d_model=bk["d_model"], n_layers=bk.get("n_layers", 8), pool=list(bk["pool"]), expand=bk.get("expand", 2),
                               ff=bk.get("ff", 2), n_ssm=bk["n_ssm"], dropout=bk.get("dropout", 0.0), d_state=bk["d_state"])
    lm = SashimiLM(model_config)
    lm.backbone.load_state_dict(convert_state(state, lm.backbone), strict=True)
    checkpoint.save({"config": {"model": model_config.to_dict()}, "model": lm.state_dict(), "source": str(state_path)}, out)
    return model_config.to_dict()

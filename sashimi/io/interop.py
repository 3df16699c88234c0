"""The published implementation's state dicts mapped onto our model (docs/DESIGN.md, "Standalone state-dict layout").

The published standalone model (state-spaces/s4 `models/sashimi/sashimi.py`) has the same module
names as ours; its pool and FF linears are Conv1d with kernel size 1, so their weights carry a
trailing axis of 1, which is the one difference in layout. Its S4 `C` holds C~ for `l_kernel`
(docs/DESIGN.md, "C~ and l_kernel"), which we honour as is.
"""

import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from sashimi.core.config import ModelConfig
from sashimi.io import checkpoint, pipeline, statefile
from sashimi.model.backbone import Backbone
from sashimi.model.lm import SashimiLM

SUPPORTED = {"bidirectional": False, "unet": False, "glu": True}


class InteropError(Exception):
    pass


def backbone_kwargs(constructor_kwargs: dict, state: dict) -> dict:
    """Our Backbone arguments from the published constructor kwargs; n_ssm is read off A_real."""
    for key, value in SUPPORTED.items():
        if constructor_kwargs.get(key, value) != value:
            raise InteropError(
                f"published option {key}={constructor_kwargs[key]!r} is not supported (only {key}={value})"
            )
    known = {"d_model", "n_layers", "pool", "expand", "ff", "dropout", "n_ssm", "d_state", *SUPPORTED}
    unknown = set(constructor_kwargs) - known
    if unknown:
        print(
            f"warning: ignoring published constructor arguments {sorted(unknown)}; the comparison will show whether "
            "they matter",
            file=sys.stderr,
        )
    kwargs = {
        k: constructor_kwargs[k]
        for k in ("d_model", "n_layers", "pool", "expand", "ff", "dropout")
        if k in constructor_kwargs
    }
    kwargs["pool"] = list(kwargs.get("pool", (4, 4)))
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
    model = Backbone(ModelConfig(**backbone_kwargs(constructor_kwargs, published))).to(dtype)
    model.load_state_dict(convert_state(published, model), strict=True)
    return model


def state_of(arrays: dict) -> dict:
    """The state dict inside a fixture: every array but the recorded inputs and outputs
    (`init.*` values before the first forward, kernels, x_input, y_*, step matrices)."""
    outputs = ("init.", "kernel.", "kernel_", "x_", "y_", "step_")
    return {k: v for k, v in arrays.items() if not k.startswith(outputs)}


def fixture_state(arrays: dict) -> dict:
    """The state dict inside a file that may be a fixture: drops `fixture/*` (pipeline fixtures) and
    the recorded inputs and outputs of a standalone fixture (`state_of`)."""
    arrays = {k: v for k, v in arrays.items() if not k.startswith(("fixture/", "init."))}
    if "x_input" in arrays or any(k.startswith(("y_", "kernel.", "kernel_")) for k in arrays):
        arrays = state_of(arrays)
    return arrays


CKPT_DEFAULT_REASON = (
    "default softplus: a Lightning .ckpt is written by the v4 pipeline's training, whose default is softplus; "
    "give --dt-transform exp for weights trained with exp"
)
DT_DEFAULT_REASON = (
    "default exp: the released *_v4.pt files were converted from v3-trained weights, which use exp; "
    "give --dt-transform softplus for a model trained by the v4 pipeline (its default)"
)


@dataclass
class Imported:
    """What an import produced: the model, its configuration, and what the user should know."""

    model: SashimiLM
    layout: str
    notes: list[str]


def standalone_model(state: dict, constructor_kwargs: dict | None, bits: int) -> Imported:
    """A standalone backbone state dict into a fresh-headed language model (the file has no embedding
    or decoder); its configuration comes from the constructor kwargs when given, else off the shapes."""
    if constructor_kwargs is None:
        try:
            config = pipeline.infer_config({"backbone." + k: v for k, v in state.items()}, "exp", bits=bits)
        except pipeline.LayoutError as e:
            raise InteropError(str(e)) from None
    else:
        kwargs = backbone_kwargs(constructor_kwargs, state)
        config = ModelConfig(
            bits=bits,
            d_model=kwargs["d_model"],
            n_layers=kwargs.get("n_layers", 8),
            pool=list(kwargs["pool"]),
            expand=kwargs.get("expand", 2),
            ff=kwargs.get("ff", 2),
            n_ssm=kwargs["n_ssm"],
            dropout=kwargs.get("dropout", 0.0),
            d_state=kwargs["d_state"],
        )
    lm = SashimiLM(config)
    lm.backbone.load_state_dict(convert_state(state, lm.backbone), strict=True)
    return Imported(
        lm,
        "standalone",
        ["embedding and decoder are freshly initialized (a published standalone state dict holds the backbone only)"],
    )


def pipeline_model(
    state: dict,
    layout: str,
    dt_transform: str | None,
    dtype: torch.dtype = torch.float32,
    lightning: bool = False,
    parametrization: str = "plain",
) -> Imported:
    """A pipeline v3 / v4 state dict as a complete language model, its configuration read off the shapes.
    `lightning`: the state came from a Lightning .ckpt, which only the v4 pipeline's training writes.
    `parametrization` "pipeline": the pool linears keep the file's g and v (`Backbone.parametrize`)."""
    notes = []
    if layout == "pipeline-v3":
        if dt_transform not in (None, "exp"):
            raise InteropError(
                f"--dt-transform {dt_transform}: a v3 state dict stores log_dt, whose Delta is exp(log_dt) by "
                "construction"
            )
        dt_transform = "exp"
        notes.append("Delta = exp(log_dt) (v3 layout)")
    elif dt_transform is None:
        dt_transform = "softplus" if lightning else "exp"
        notes.append(f"Delta = {dt_transform}(inv_dt): {CKPT_DEFAULT_REASON if lightning else DT_DEFAULT_REASON}")
    else:
        notes.append(f"Delta = {dt_transform}(inv_dt) (as given: --dt-transform, or the fixture's sidecar)")
    try:
        config = pipeline.infer_config(pipeline.convert(state, layout), dt_transform)
        ours = pipeline.convert(state, layout, parametrization)
    except pipeline.LayoutError as e:
        raise InteropError(str(e)) from None
    if parametrization != "plain":
        config = replace(config, parametrization=parametrization)
        notes.append("the pool linears keep the file's weight norm (g, v), trained as the pipeline trains them")
    lm = SashimiLM(config).to(dtype)  # before loading: folded weights keep their float64 precision in a float64 model
    lm.load_state_dict(convert_state(ours, lm), strict=True)
    return Imported(lm, layout, notes)


def import_file(
    path: Path,
    constructor_kwargs: dict | None = None,
    bits: int | None = None,
    dt_transform: str | None = None,
    parametrization: str = "plain",
) -> Imported:
    """Any published state dict (standalone, pipeline v3 or v4; .pt, .ckpt or .npz) as our language model,
    its pool linears trained as `parametrization` says (`Backbone.parametrize`)."""
    try:
        state, prefix = pipeline.strip_prefix(fixture_state(statefile.read_state_dict(path)))
        layout = pipeline.detect_layout(state)
    except (statefile.StateFileError, pipeline.LayoutError) as e:
        raise InteropError(str(e)) from None
    if layout == "standalone":
        if dt_transform not in (None, "exp"):
            raise InteropError(f"--dt-transform {dt_transform}: the standalone model's Delta is exp(inv_dt)")
        imported = standalone_model(state, constructor_kwargs, bits or 8)
        if parametrization != "plain":
            imported.model.parametrize(parametrization)
            imported.notes.append(
                "the pool linears are trained weight-normed from g = ||W|| per row and v = W (the standalone "
                "state holds W alone)"
            )
    else:
        imported = pipeline_model(
            state, layout, dt_transform, lightning=Path(path).suffix == ".ckpt", parametrization=parametrization
        )
    if bits is not None and bits != imported.model.config.bits:
        raise InteropError(
            f"--bits {bits}: {path} is a {imported.model.config.bits}-bit model (its embedding has "
            f"{imported.model.config.n_classes} rows)"
        )
    if prefix:
        imported.notes.insert(
            0, f"every key carried the prefix {prefix!r} (the name of a wrapper it was saved from); read without it"
        )
    return imported


def save_imported(imported: Imported, source: Path, out: Path, quantization: str, sample_rate: int) -> Path:
    """A checkpoint `generate`, `evaluate` and `train --init` read: the model and how it hears audio."""
    config = imported.model.config
    train = {"preset": "sc09", "bits": config.bits, "quantization": quantization, "sample_rate": sample_rate}
    payload = {
        "config": {"model": config.to_dict(), "train": train},
        "model": imported.model.state_dict(),
        "imported": {"source": str(source), "layout": imported.layout, "notes": imported.notes},
    }
    return checkpoint.save(payload, out)

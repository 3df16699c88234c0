"""The official training pipeline's state dicts (v3 and v4 layouts) mapped onto our language model
(docs/DESIGN.md, "Pipeline state-dict layout").

The released SaShiMi weights are state dicts of the pipeline's `SequenceLightningModule`:
`encoder.0.weight` (the embedding), `model.*` (the backbone), `decoder.0.output_transform.*`.
Its backbone differs from the standalone one in names and in three variants our model expresses
(`ModelConfig.norm`, `dt_transform`, `s4_output`), and its pool linears are weight-normed; we fold
W = g v / ||v|| (per output row) into plain weights here, exactly.

v4: `<block>.layer.layer.kernel.{inv_dt (H, 1), A_real, A_imag, B, P, C, l_kernel}`,
`<block>.layer.layer.D`, Delta = softplus(inv_dt) when trained by v4, exp(inv_dt) when converted
from v3 (keys cannot tell: the caller chooses). v3: `<block>.layer.kernel.kernel.{log_dt (H),
inv_w_real or log_w_real, w_imag, B, P, C, L}`, `<block>.layer.D`, Delta = exp(log_dt),
Lambda = -exp(inv_w_real) + i w_imag, so our A_imag = -w_imag.
"""

import math
import re

import torch

from sashimi.core.config import ModelConfig

LAYOUTS = ("standalone", "pipeline-v3", "pipeline-v4")


class LayoutError(ValueError):
    pass


def detect_layout(keys) -> str:
    """standalone (the published standalone backbone), pipeline-v3 or pipeline-v4, from the keys alone."""
    keys = list(keys)
    if any(k.endswith(".kernel.kernel.log_dt") for k in keys):
        return "pipeline-v3"
    if any(k.startswith("model.") and k.endswith(".kernel.inv_dt") for k in keys):
        return "pipeline-v4"
    if any(k.endswith(".kernel.inv_dt") for k in keys) and not any(
        k.startswith(("model.", "encoder.", "decoder.")) for k in keys
    ):
        return "standalone"
    sample = ", ".join(sorted(keys)[:4]) or "no keys"
    raise LayoutError(
        "not a SaShiMi state dict of a known layout (standalone, pipeline v3 or v4): no S4 kernel keys found (first "
        f"keys: {sample})"
    )


# keys that exist once, at the top of each layout: the pipeline's embedding, the standalone backbone's final norm
_ANCHORS = ("encoder.0.weight", "norm.weight")


def key_prefix(keys) -> str:
    """The extra leading name every key carries when the state dict was saved from a wrapper
    (`module.` of DistributedDataParallel, `_orig_mod.` of torch.compile, a Lightning module's
    attribute such as `model.`), found from the layout's top-level anchor key; "" when there is none.
    A prefix that only some keys carry is a LayoutError naming it and a key without it."""
    keys = list(keys)
    for anchor in _ANCHORS:
        hits = [k for k in keys if k == anchor or k.endswith("." + anchor)]
        if hits:
            prefix = min(hits, key=len)[: -len(anchor)]
            if not prefix:
                return ""
            lacking = [k for k in keys if not k.startswith(prefix)]
            if lacking:
                raise LayoutError(
                    f"the keys carry the prefix {prefix!r} (e.g. {prefix}{anchor}) but not all of them ({lacking[0]!r} "
                    "does not): "
                    "not one model's state dict"
                )
            return prefix
    return ""


def strip_prefix(state: dict) -> tuple[dict, str]:
    """`state` without the prefix `key_prefix` finds, and that prefix."""
    prefix = key_prefix(state)
    return ({k[len(prefix) :]: v for k, v in state.items()} if prefix else state), prefix


_V3_KERNEL = {
    "log_dt": "inv_dt",
    "inv_w_real": "A_real",
    "log_w_real": "A_real",
    "w_imag": "A_imag",
    "B": "B",
    "P": "P",
    "C": "C",
    "L": "l_kernel",
}


def _rename(key: str, layout: str) -> str | None:
    """Our SashimiLM key of a pipeline key (None for a weight-norm half, folded separately)."""
    if key == "encoder.0.weight":
        return "encoder.embedding.weight"
    if key.startswith("decoder.0.output_transform."):
        return "decoder." + key[len("decoder.0.") :]
    if not key.startswith("model."):
        raise LayoutError(
            f"unexpected key {key!r}: a pipeline state dict holds encoder.0.*, model.* and "
            "decoder.0.output_transform.* only"
        )
    key = "backbone." + key[len("model.") :]
    key = key.replace(".norm.norm.", ".norm.")
    if key.endswith((".weight_g", ".weight_v")):
        return None
    if layout == "pipeline-v3":
        match = re.fullmatch(r"(.*)\.layer\.kernel\.kernel\.(\w+)", key)
        if match:
            name = _V3_KERNEL.get(match.group(2))
            if name is None:
                raise LayoutError(f"unexpected v3 kernel parameter {key!r} (known: {', '.join(_V3_KERNEL)})")
            return f"{match.group(1)}.layer.layer.kernel.{name}"
        if key.endswith(".layer.D"):
            return key[: -len("D")] + "layer.D"
    return key


def our_parameter(key: str, layout: str) -> str:
    """Our SashimiLM parameter that a pipeline parameter feeds (both halves of a weight-normed pool
    linear feed its folded weight)."""
    if key.startswith("model.") and key.endswith((".weight_g", ".weight_v")):
        return "backbone." + key[len("model.") : -len("_g")]
    name = _rename(key, layout)
    assert name is not None, key
    return name


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """W = g v / ||v||, the norm per output row (torch's weight_norm with dim=0), in float64."""
    v64 = v.double().reshape(v.shape[0], -1)
    W = g.double().reshape(-1, 1) * v64 / v64.norm(dim=1, keepdim=True)
    return W.reshape(v.shape)


def weight_norm_key(key: str) -> str:
    """Our name of a pipeline weight-norm half under `--parametrization pipeline` (torch's weight_norm
    parametrization: g is original0, v original1)."""
    half = {"_g": "original0", "_v": "original1"}[key[-2:]]
    return "backbone." + key[len("model.") : -len("weight_g")] + "parametrizations.weight." + half


def convert(state: dict, layout: str, parametrization: str = "plain") -> dict:
    """A pipeline state dict in our SashimiLM's names and shapes (float64 where folded or negated); the
    pool linears' g and v folded into W ("plain") or kept as they are ("pipeline")."""
    out = {}
    for key, value in state.items():
        name = _rename(key, layout)
        if name is None:
            if key.endswith(".weight_g"):
                v_key = key[: -len("_g")] + "_v"
                if v_key not in state:
                    raise LayoutError(f"{key} has no matching {v_key}")
                if parametrization == "pipeline":
                    out[weight_norm_key(key)], out[weight_norm_key(v_key)] = value, state[v_key]
                else:
                    out["backbone." + key[len("model.") : -len("_g")]] = fold_weight_norm(value, state[v_key])
            continue
        if layout == "pipeline-v3" and name.endswith(".kernel.A_imag"):
            value = -value.double()
        if layout == "pipeline-v3" and name.endswith(".kernel.inv_dt"):
            value = value.reshape(-1, 1)
        out[name] = value
    for key in state:
        if key.endswith(".weight_v") and key[: -len("_v")] + "_g" not in state:
            raise LayoutError(f"{key} has no matching weight_g")
    return out


def pipeline_value(key: str, ours: dict, layout: str, shape: tuple) -> torch.Tensor:
    """The inverse of `convert` (pool weights "pipeline") for one pipeline key: its value, in the
    pipeline's sign and `shape`, read from our state dict `ours`."""
    if key.startswith("model.") and key.endswith((".weight_g", ".weight_v")):
        return ours[weight_norm_key(key)].reshape(shape)
    name = _rename(key, layout)
    sign = -1 if layout == "pipeline-v3" and name.endswith(".kernel.A_imag") else 1
    return (sign * ours[name]).reshape(shape)


def infer_config(ours: dict, dt_transform: str, bits: int | None = None) -> ModelConfig:
    """The whole ModelConfig from the shapes of a state dict in our names; `bits` for a backbone
    alone (the standalone layout, which holds no embedding)."""

    def shape(key):
        if key not in ours:
            raise LayoutError(f"cannot infer the configuration: {key} is missing")
        return tuple(ours[key].shape)

    if bits is None:
        n_classes, d_model = shape("encoder.embedding.weight")
        bits = int(round(math.log2(n_classes)))
        if 2**bits != n_classes or bits not in (8, 16):
            raise LayoutError(
                f"the embedding has {n_classes} classes; only 8-bit (256) and 16-bit (65536) models exist"
            )
    else:
        d_model = shape("backbone.norm.weight")[0]
    pool, H, expand = [], d_model, None
    while f"backbone.d_layers.{len(pool)}.linear.weight" in ours:
        out_features, in_features = shape(f"backbone.d_layers.{len(pool)}.linear.weight")[:2]
        pool.append(in_features // H)
        expand = out_features // H
        H = out_features
    center = sorted({int(k.split(".")[2]) for k in ours if k.startswith("backbone.c_layers.")})
    s4_center = [i for i in center if f"backbone.c_layers.{i}.layer.layer.kernel.A_real" in ours]
    n_layers = len(s4_center)
    ff_keys = [k for k in ours if k.startswith("backbone.c_layers.") and k.endswith("layer.ff.0.0.weight")]
    ff = shape(ff_keys[0])[0] // H if ff_keys else 0
    first = next(k for k in sorted(ours) if k.endswith(".kernel.A_real"))
    S, N2 = shape(first)
    widths = {k: shape(k.replace("kernel.A_real", "kernel.C"))[1] for k in ours if k.endswith(".kernel.A_real")}
    copies = {shape(k)[0] for k in widths}
    if len(copies) == 1:  # one count for every layer (when every layer is as wide, H and None mean the same)
        n_ssm = S
    elif all(shape(k)[0] == H_k for k, H_k in widths.items()):
        n_ssm = None
    else:
        raise LayoutError(f"the S4 layers have different numbers of SSM copies {sorted(copies)}: not one n_ssm")
    prefix = first[: -len("layer.kernel.A_real")]
    rows, width = shape(prefix + "output_linear.0.weight")
    s4_output = "glu" if rows == 2 * width else "linear"
    norm = "scalar" if any(k.endswith(".norm.m") for k in ours) else "layer"
    return ModelConfig(
        bits=bits,
        d_model=d_model,
        n_layers=n_layers,
        pool=pool,
        expand=expand or 2,  # mutate: skip without a pool, expand shapes no weight
        ff=ff,
        n_ssm=n_ssm,
        d_state=2 * N2,
        norm=norm,
        dt_transform=dt_transform,
        s4_output=s4_output,
    )

"""The whole SaShiMi forward in float64 NumPy, from a dictionary of parameter arrays.

Parameter names are those of `sashimi.model.lm.SashimiLM.state_dict()` (Linear weights
(out, in)); `config` holds d_model, n_layers, pool, expand, ff as in docs/DESIGN.md, "The backbone",
and optionally the published variants norm ("layer" | "scalar"), dt_transform ("exp" |
"softplus") and s4_output ("glu" | "linear") (docs/DESIGN.md, "Pipeline variants").
Slow and obvious: pooling by explicit index loops, one block at a time.
"""

import numpy as np
from jaxtyping import Float, Int
from numpy import ndarray

from reference.layer import gelu, linear
from reference.layer import s4_layer as s4_layer_forward


def layer_norm(
    x: Float[ndarray, "*batch H"], weight: Float[ndarray, " H"], bias: Float[ndarray, " H"], eps: float = 1e-5
) -> Float[ndarray, "*batch H"]:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last axis (biased variance)."""
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def scalar_norm(x: Float[ndarray, "*batch H"], m: float, s: float) -> Float[ndarray, "*batch H"]:
    """The pipeline's transposed norm: (s / sigma) (x - mu + m), sigma the population standard
    deviation over the last axis, no epsilon."""
    mu = x.mean(-1, keepdims=True)
    sigma = np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True))
    return s / sigma * (x - mu + m)


def down_pool(
    x: Float[ndarray, "B L H"], W: Float[ndarray, "O I"], b: Float[ndarray, " O"], P: int
) -> Float[ndarray, "B Lc O"]:
    """Fine time t = l P + s of channel h -> channel h P + s at coarse step l, then Linear."""
    Bsz, L, H = x.shape
    z = np.zeros((Bsz, L // P, H * P))
    for l in range(L // P):
        for h in range(H):
            for s in range(P):
                z[:, l, h * P + s] = x[:, l * P + s, h]
    return linear(z, W, b)


def up_pool(
    x: Float[ndarray, "B Lc H"], W: Float[ndarray, "O H"], b: Float[ndarray, " O"], P: int
) -> Float[ndarray, "B L Hout"]:
    """Linear, shift right one coarse step (zero first), then channel h P + s at step l -> time l P + s of channel h."""
    y = linear(x, W, b)
    y = np.concatenate([np.zeros_like(y[:, :1]), y[:, :-1]], axis=1)
    Bsz, Lc, HP = y.shape
    H = HP // P
    out = np.zeros((Bsz, Lc * P, H))
    for l in range(Lc):
        for h in range(H):
            for s in range(P):
                out[:, l * P + s, h] = y[:, l, h * P + s]
    return out


def sub(params: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


def residual_block(params: dict, x: Float[ndarray, "B L H"], config: dict) -> Float[ndarray, "B L H"]:
    """x + layer(norm(x)); the layer is S4 when it has a kernel, else feed-forward."""
    if config.get("norm", "layer") == "layer":
        z = layer_norm(x, params["norm.weight"], params["norm.bias"])
    else:
        z = scalar_norm(x, float(params["norm.m"][0]), float(params["norm.s"][0]))
    if "layer.layer.kernel.A_real" in params:
        y = s4_layer_forward(
            sub(params, "layer."), z, config.get("dt_transform", "exp"), config.get("s4_output", "glu")
        )
    else:
        y = linear(
            gelu(linear(z, params["layer.ff.0.0.weight"], params["layer.ff.0.0.bias"])),
            params["layer.ff.2.weight"],
            params["layer.ff.2.bias"],
        )
    return x + y


def blocks_of(params: dict, prefix: str) -> list[int]:
    return sorted({int(k[len(prefix) :].split(".")[0]) for k in params if k.startswith(prefix)})


def backbone(params: dict, config: dict, x: Float[ndarray, "B L H"]) -> Float[ndarray, "B L H"]:
    pools = list(config["pool"])
    skips = [x]
    for i, P in enumerate(pools):
        x = down_pool(x, params[f"d_layers.{i}.linear.weight"], params[f"d_layers.{i}.linear.bias"], P)
        skips.append(x)
    for j in blocks_of(params, "c_layers."):
        x = residual_block(sub(params, f"c_layers.{j}."), x, config)
    x = x + skips.pop()
    for k, P in enumerate(pools[::-1]):
        x = up_pool(x, params[f"u_layers.{k}.0.linear.weight"], params[f"u_layers.{k}.0.linear.bias"], P) + skips.pop()
        stage_input = x
        for m in blocks_of(params, f"u_layers.{k}."):
            if m > 0:
                x = residual_block(sub(params, f"u_layers.{k}.{m}."), x, config)
        x = x + stage_input
    return layer_norm(x, params["norm.weight"], params["norm.bias"])


def language_model(params: dict, config: dict, tokens: Int[ndarray, "B L"]) -> Float[ndarray, "B L C"]:
    """Embedding lookup -> backbone -> Linear(d, C) at every position."""
    x = np.asarray(params["encoder.embedding.weight"], dtype=np.float64)[tokens]
    x = backbone(sub(params, "backbone."), config, x)
    return linear(x, params["decoder.output_transform.weight"], params["decoder.output_transform.bias"])

"""A deterministic random state dict for the official pipeline's small model: every value depends
only on (seed, key name, shape), so two releases with the same key layout get the same weights."""

import zlib

import numpy as np

from official import pipeline as P

# a sidecar's "shape" with weight_scale s: weight_g, the other Linear weights and the biases times s
DT_MIN, DT_MAX = 0.002, 0.2  # log-uniform Delta for the randomized SSMs

# how each kind of entry is drawn (recorded in the fixtures' sidecars)
RULES = {
    "rule": "per key: numpy default_rng([seed, crc32(key)]); values depend only on seed, key, shape",
    "dt": f"log-uniform [{DT_MIN}, {DT_MAX}]",
    "Re Lambda": "-uniform(0.1, 1.0)",
    "Im Lambda magnitude": "pi*(n + U(-0.3,0.3))",
    "B, P, C (real views)": "0.5*N(0,1)",
    "D": "N(0,1)",
    "norm.norm.m": "0.3*N(0,1)",
    "norm.norm.s": "U(0.6,1.4)",
    "weight_v": "U(-1,1)/sqrt(in)",
    "weight_g": "||v_row|| * U(0.5,1.5)",
    "other Linear weights": "U(-1,1)*sqrt(3/in)",
    "biases": "0.5*U(-1,1)",
    "LayerNorm": "weight 1+0.3N, bias 0.3N",
    "embedding": "N(0,1)",
}


def stage_len(key, ref):
    """The C~ buffer length of an S4 layer's key: d_layers are pools (no S4); c_layers run at
    base / prod(pool), u_layers.i at base / prod(pool[:K-1-i]) (the top one, i = K-1, at base;
    v4: l_kernel L_BUF, v3: layer l_max V3_LMAX)."""
    base = P.V3_LMAX if ref == "v3.0.0" else P.L_BUF
    K = len(P.POOL)
    if key.startswith("model.c_layers."):
        return base // int(np.prod(P.POOL))
    if key.startswith("model.u_layers."):
        i = int(key.split(".")[2])
        return base // int(np.prod(P.POOL[: K - 1 - i]))
    raise KeyError(key)


def key_rng(seed, key):
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def is_s4_kernel_key(k):
    return ".kernel." in k


def randomize_state_dict(sd, seed, ref):
    """Return {key: np.ndarray} with every entry replaced by seeded random values.

    Values depend only on (seed, key name, shape), so v4 and v4.1.0 (same key layout)
    get identical state dicts. An S4 layer's C~ buffer length (v4 l_kernel / v3 L) is
    `stage_len(key, ref)`."""
    out = {}
    for k, v in sd.items():
        shape = tuple(v.shape)
        dtype = v.dtype
        r = key_rng(seed, k)
        name = k.rsplit(".", 1)[-1]
        if name in ("l_kernel", "L") and shape == ():
            a = np.array(stage_len(k, ref), dtype=np.int64)
        elif name == "inv_dt":  # v4, dt_transform softplus: dt = softplus(inv_dt)
            dt = np.exp(r.uniform(np.log(DT_MIN), np.log(DT_MAX), size=shape))
            a = np.log(np.expm1(dt))
        elif name == "log_dt":  # v3: dt = exp(log_dt)
            a = r.uniform(np.log(DT_MIN), np.log(DT_MAX), size=shape)
        elif name in ("A_real", "inv_w_real", "log_w_real"):  # Re Lambda = -exp(.)
            a = np.log(r.uniform(0.1, 1.0, size=shape))
        elif name == "A_imag":  # v4: Im Lambda = -A_imag  (A_imag >= 0)
            n = np.arange(shape[-1])
            a = np.pi * (n + r.uniform(-0.3, 0.3, size=shape))
            a = np.abs(a)
        elif name == "w_imag":  # v3: Im Lambda = +w_imag; keep the init's sign convention
            n = np.arange(shape[-1])
            a = np.abs(np.pi * (n + r.uniform(-0.3, 0.3, size=shape)))
            init = v.detach().cpu().double().numpy()
            sgn = -1.0 if (init <= 0).all() else 1.0
            a = sgn * a
        elif is_s4_kernel_key(k) and name in ("B", "P"):
            a = 0.5 * r.standard_normal(shape)
        elif is_s4_kernel_key(k) and name == "C":
            a = 0.5 * r.standard_normal(shape)
        elif k.endswith("norm.norm.m"):
            a = 0.3 * r.standard_normal(shape)
        elif k.endswith("norm.norm.s"):
            a = r.uniform(0.6, 1.4, size=shape)
        elif name == "weight_v":
            a = r.uniform(-1, 1, size=shape) / np.sqrt(shape[1])
        elif name == "weight_g":
            a = None  # filled after weight_v (below)
        elif name == "weight" and len(shape) == 1:  # LayerNorm weight
            a = 1.0 + 0.3 * r.standard_normal(shape)
        elif name == "bias" and ("norm" in k):  # LayerNorm bias
            a = 0.3 * r.standard_normal(shape)
        elif k.startswith("encoder.") and name == "weight":  # nn.Embedding
            a = r.standard_normal(shape)
        elif name == "weight" and len(shape) == 2:
            a = P.WEIGHT_SCALE * r.uniform(-1, 1, size=shape) * np.sqrt(3.0 / shape[1])
        elif name == "bias":
            a = P.WEIGHT_SCALE * 0.5 * r.uniform(-1, 1, size=shape)
        elif name == "D":
            a = r.standard_normal(shape)
        else:
            raise KeyError(f"no randomization rule for {k} {shape}")
        if a is not None:
            a = np.asarray(a).astype(np.int64 if dtype.is_floating_point is False else np.float32)
            if a.shape != shape:
                a = a.reshape(shape)
        out[k] = a
    for k in out:
        if k.endswith("weight_g"):
            v = out[k[:-1] + "v"].astype(np.float64)
            nrm = np.linalg.norm(v.reshape(v.shape[0], -1), axis=1).reshape(sd[k].shape)
            r = key_rng(seed, k)
            out[k] = (P.WEIGHT_SCALE * nrm * r.uniform(0.5, 1.5, size=nrm.shape)).astype(np.float32)
    return out

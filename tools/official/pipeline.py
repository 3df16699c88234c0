"""The official training pipeline's small SC09 SaShiMi: its hydra config composed the way its
generate.py composes it, the `SequenceLightningModule` built from it, and its forward and step runs."""

import contextlib
import copy
import io
import os
import subprocess

import numpy as np

REFS = ("v3.0.0", "v4", "v4.1.0")

# Small fixture model
D_MODEL = 16
N_LAYERS = 2
POOL = [4, 4]
EXPAND = 2
FF = 2
BITS = 8
D_STATE = 16  # N (state size); N2 = N/2 complex conjugate-pair entries are stored
WEIGHT_SCALE = 1.0  # multiplies the randomized linear weights and biases (randomize.py)
SHAPE_KEYS = ("D_MODEL", "N_LAYERS", "POOL", "EXPAND", "FF", "BITS", "D_STATE", "WEIGHT_SCALE")
BATCH = 2
L_FIX = 64  # fixture input length
L_BUF = 128  # v4: l_kernel of the top stage (what a first forward at L=128 leaves)
V3_LMAX = 256  # v3: dataset l_max -> layer l_max (= buffer L) 256 / 64 / 16 per stage


def set_shape(spec: str) -> dict:
    """Another fixture model: `spec` is "d_model=12,n_layers=1,pool=2x4,ff=0,d_state=8,bits=8,
    weight_scale=2"; every name not given keeps the small model's value. Returns the whole shape."""
    g = globals()
    for item in filter(None, spec.split(",")):
        name, value = item.split("=")
        key = name.strip().upper()
        if key not in SHAPE_KEYS:
            raise SystemExit(f"error: --shape {name}: one of {', '.join(k.lower() for k in SHAPE_KEYS)}")
        kind = float if key == "WEIGHT_SCALE" else int
        g[key] = [int(p) for p in value.split("x")] if key == "POOL" else kind(value)
    return {k.lower(): g[k] for k in SHAPE_KEYS}


def add_shape_flags(ap, kind: str) -> None:
    """--shape (another model, `set_shape`) and --name (the files' stem, default <kind>_<ref>)."""
    ap.add_argument(
        "--shape",
        default="",
        help="another model: d_model=12,n_layers=1,pool=2x4,expand=2,ff=0,d_state=8,bits=8,weight_scale=2 "
        "(names not given keep the small model's)",
    )
    ap.add_argument("--name", default=None, help=f"the files' stem (default: {kind}_<ref>)")


def git_commit(s4):
    try:
        return subprocess.check_output(
            ["git", "-C", s4, "rev-parse", "HEAD"], stderr=subprocess.DEVNULL, text=True
        ).strip()
    except Exception:
        return None


def compose(s4, overrides):
    """Compose the generate.yaml config (which includes config.yaml) with overrides,
    then post-process it exactly as generate.py does before building the module."""
    import src.utils.train as sut
    from hydra import compose as hcompose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=os.path.join(s4, "configs"), version_base=None):
        config = hcompose(config_name="generate", overrides=overrides)
    # generate.py: special override flags
    if not config.load_data:
        OmegaConf.update(config, "train.disable_dataset", True)
    if "n_batch" in config:
        if config.n_batch is None:
            config.n_batch = config.n_samples
        OmegaConf.update(config, "loader.batch_size", config.n_batch)
    else:  # v3.0.0 generate.py
        OmegaConf.update(config, "loader.batch_size", config.n_samples)
    with contextlib.suppress(Exception):
        OmegaConf.clear_resolver("eval")  # process_config registers it each call
    with contextlib.redirect_stdout(io.StringIO()):
        config = sut.process_config(config)
    return config


def small_overrides(ref, final_act="glu"):
    ov = [
        "experiment=audio/sashimi-sc09",
        "load_data=false",
        "wandb=null",
        f"model.d_model={D_MODEL}",
        f"model.n_layers={N_LAYERS}",
        f"model.pool=[{','.join(map(str, POOL))}]",
        f"model.expand={EXPAND}",
        f"model.ff={FF}",
        f"dataset.bits={BITS}",
        f"model.layer.d_state={D_STATE}",
        "model.layer.verbose=false",
    ]
    if ref == "v3.0.0":
        ov.append(f"dataset.__l_max={V3_LMAX}")
    ov += act_overrides(ref, final_act)
    return ov


def full_overrides(ref, final_act="glu"):
    ov = ["experiment=audio/sashimi-sc09", "load_data=false", "wandb=null", "model.layer.verbose=false"]
    return ov + act_overrides(ref, final_act)


def act_overrides(ref, final_act):
    if final_act == "glu":
        return []
    key = "postact" if ref == "v3.0.0" else "final_act"
    return [f"model.layer.{key}={final_act}"]


def build_module(config):
    from train import SequenceLightningModule

    with contextlib.redirect_stdout(io.StringIO()):
        model = SequenceLightningModule(copy.deepcopy(config))
    model.eval()
    return model


def cfg_dict(config):
    from omegaconf import OmegaConf

    keep = {k: config[k] for k in ("model", "encoder", "decoder", "dataset", "task") if k in config}
    return OmegaConf.to_container(OmegaConf.create(keep), resolve=True)


def load_fresh(config, sd_np, dtype):
    import torch

    model = build_module(config)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in sd_np.items()}
    with contextlib.redirect_stdout(io.StringIO()):
        model.load_state_dict(sd, strict=True)
    if dtype == torch.float64:
        model.double()  # BEFORE any forward (caches are created lazily in forward/setup)
    model.eval()
    return model


def run_forward(model, tokens):
    import torch

    with torch.no_grad():
        y, _, _ = model((tokens, None))
    return y


def run_step(model, tokens, s4):
    """Teacher-forced stepping as generate.py sets it up (dense mode)."""
    import torch

    gen_src = open(os.path.join(s4, "generate.py")).read()
    hook = "_setup_step" if "hasattr(module, '_setup_step')" in gen_src else "setup_step"
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        for module in model.modules():
            if hasattr(module, hook):
                getattr(module, hook)()
        model.eval()
        batch = (tokens, None, None)
        model._reset_state(batch, device="cpu")
        ys = []
        for t in range(tokens.shape[1]):
            ys.append(model.step(tokens[:, t]))
    return torch.stack(ys, dim=1), hook


def kernel_buffers(model):
    out = {}
    for k, v in model.state_dict().items():
        if k.endswith(".l_kernel") or k.endswith(".kernel.L"):
            out[k] = int(v.item())
    return out


def count_params(model):
    tot = sum(p.numel() for p in model.parameters())
    enc = sum(p.numel() for p in model.encoder.parameters())
    dec = sum(p.numel() for p in model.decoder.parameters())
    bb = sum(p.numel() for p in model.model.parameters())
    g = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight_g"))
    return {
        "total": tot,
        "encoder": enc,
        "backbone": bb,
        "decoder": dec,
        "weight_g_entries": g,
        "total_without_weight_g": tot - g,
        "backbone_without_weight_g": bb - g,
    }


def keys_json(ref, s4):
    res = {"ref": ref}
    for act in ("glu", "id"):
        config = compose(s4, full_overrides(ref, act))
        model = build_module(config)
        sd = model.state_dict()
        res[f"final_act_{act}"] = {
            "overrides": full_overrides(ref, act),
            "params": count_params(model),
            "state_dict": {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in sd.items()},
            "parameter_keys": [n for n, _ in model.named_parameters()],
            "kernel_l_max": {
                n: getattr(m, "l_max", None)
                for n, m in model.named_modules()
                if type(m).__name__ in ("SSKernelNPLR", "SSMKernelDPLR")
            },
        }
        if act == "glu":
            res["config"] = cfg_dict(config)
    res["note"] = (
        "params counts nn.Module.parameters(): weight-normed pool linears "
        "contribute weight_g (out,1) AND weight_v (out,in) (the derived .weight is "
        "not a parameter); *_without_weight_g drops the g entries, i.e. counts a "
        "plain Linear W for each pool. Buffers (l_kernel / L) are not counted."
    )
    return res

#!/usr/bin/env python3
"""Produce training fixtures from the OFFICIAL state-spaces/s4 training pipeline.

The sibling of make_published_fixtures.py (same environment, same small SC09 model, same
randomized state dict; see tools/README.md). For one batch it records what the pipeline's own
training computes in float64: the loss (`SequenceLightningModule.forward` then its task loss,
what `_shared_step` does), the gradient of every parameter by state-dict name, the optimizer's
parameter groups exactly as its `configure_optimizers` builds them, and the parameters after 3
optimizer steps on that batch, clipping gradients as the experiment's trainer config says (sc09:
`gradient_clip_val` null in v4, 0.0 in v3.0.0, i.e. no clipping). Nothing of the official code
is copied into this repository.

Usage::

    /tmp/pipeline-venv/bin/python tools/make_training_fixtures.py \
        --s4 /tmp/s4-e757cef --ref v4 --out tests/published --commit e757cef... \
        [--recipes specs/official_recipes.json]

Outputs: DIR/training_<ref>.npz (the state dict under its pipeline names, `train/tokens`,
`train/targets`, `train/loss_f64`, `grad/<name>`, `step3/<name>`) and DIR/training_<ref>.json
(commit, groups, clipping, overrides). `--recipes FILE` (v4 only) also writes the resolved
optimizer, scheduler and trainer settings of the sashimi sc09 / youtubemix / beethoven experiments.
"""

import argparse
import contextlib
import io
import json
import os
import sys

import numpy as np
from official import pipeline as P
from official.pipeline import BATCH, L_FIX, build_module, compose, load_fresh, small_overrides
from official.randomize import randomize_state_dict
from official.stubs import install_stubs

STEPS = 3
PROBE = ["optimizer.lr=0.004", "optimizer.weight_decay=0.1"]  # tells the grouping rules apart
RECIPES = ("sc09", "youtubemix", "beethoven")


def official_loss(model, x, y):
    """What `_shared_step` computes for the training loss, without its logging."""
    out, target, w = model((x, y))
    return model.loss(out, target, **w)


def clip_value(config):
    value = config.trainer.get("gradient_clip_val")
    return None if value in (None, 0, 0.0) else float(value)


def groups_of(model, optimizer):
    names = {id(p): n for n, p in model.named_parameters()}
    out = []
    for g in optimizer.param_groups:
        out.append(
            {
                "names": [names[id(p)] for p in g["params"]],
                "lr": g["lr"],
                "weight_decay": g["weight_decay"],
                "betas": list(g["betas"]),
                "eps": g["eps"],
                "amsgrad": g.get("amsgrad", False),
            }
        )
    return out


def configured_optimizer(config, sd_np):
    """A fresh float64 module holding `sd_np` and the optimizer its `configure_optimizers` builds."""
    import torch

    model = load_fresh(config, sd_np, torch.float64)
    model.train()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        optimizers, schedulers = model.configure_optimizers()
    return model, optimizers[0], schedulers[0]


def training_run(config, sd_np, x, y):
    """Loss, gradients and groups at the start, and the parameters after STEPS steps."""
    import torch

    model, optimizer, scheduler = configured_optimizer(config, sd_np)
    clip = clip_value(config)
    loss0, grads = None, None
    for step in range(STEPS):
        optimizer.zero_grad(set_to_none=True)
        loss = official_loss(model, x, y)
        loss.backward()
        if step == 0:
            loss0 = float(loss.detach())
            grads = {n: p.grad.detach().clone().numpy() for n, p in model.named_parameters()}
        if clip is not None:  # what Lightning does with gradient_clip_val (norm clipping by default)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
    params = {n: p.detach().clone().numpy() for n, p in model.named_parameters()}
    assert all(v.dtype == np.float64 for v in params.values())
    return loss0, grads, params, groups_of(model, optimizer), scheduler


def scheduler_info(scheduler):
    s = scheduler["scheduler"] if isinstance(scheduler, dict) else scheduler
    keep = {k: v for k, v in (scheduler.items() if isinstance(scheduler, dict) else []) if k != "scheduler"}
    return {
        "class": type(s).__name__,
        **{
            k: getattr(s, k)
            for k in ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lrs", "eps")
            if hasattr(s, k)
        },
        **keep,
    }


def compose_train(s4, overrides):
    """train.py's own config (config.yaml, not generate.yaml, whose post-processing replaces the
    loader's batch size), processed as train.py processes it; and the dataset's __l_max."""
    import src.utils.train as sut
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=os.path.join(s4, "configs"), version_base=None):
        config = compose(config_name="config", overrides=overrides)
    l_max = OmegaConf.select(config, "dataset.__l_max")
    with contextlib.suppress(Exception):
        OmegaConf.clear_resolver("eval")
    with contextlib.redirect_stdout(io.StringIO()):
        config = sut.process_config(config)
    return config, l_max


def recipes(s4, commit):
    """The resolved training recipe of each sashimi audio experiment (full-size model)."""
    from omegaconf import OmegaConf

    out = {
        "_doc": "resolved by tools/make_training_fixtures.py --recipes from the official state-spaces/s4 configs "
        "(hydra compose of train.py's config.yaml with experiment=audio/sashimi-<name>, then "
        "src.utils.train.process_config)",
        "commit": commit,
    }
    for name in RECIPES:
        config, l_max = compose_train(s4, [f"experiment=audio/sashimi-{name}", "wandb=null"])

        def pick(node, keys):
            c = OmegaConf.to_container(node, resolve=True)
            return {k: c[k] for k in keys if k in c}

        layer = pick(
            config.model.layer, ("d_state", "n_ssm", "dt_min", "dt_max", "dt_transform", "lr", "wd", "init", "mode")
        )
        out[name] = {
            "source": f"configs/experiment/audio/sashimi-{name}.yaml",
            "defaults": {
                k: f"configs/{k}/{v}.yaml"
                for k, v in (
                    ("optimizer", "adamw"),
                    ("scheduler", "plateau"),
                    ("trainer", "default"),
                    ("loader", "default"),
                    ("dataset", name),
                    ("model", "sashimi"),
                )
            },
            "optimizer": OmegaConf.to_container(config.optimizer, resolve=True),
            "scheduler": OmegaConf.to_container(config.scheduler, resolve=True),
            "train": pick(config.train, ("interval", "monitor", "mode", "ema", "optimizer_param_grouping")),
            "trainer": pick(
                config.trainer, ("max_epochs", "gradient_clip_val", "accumulate_grad_batches", "precision")
            ),
            "loader": pick(config.loader, ("batch_size", "drop_last")),
            "dataset": {**OmegaConf.to_container(config.dataset, resolve=True), "__l_max": l_max},
            "model": {
                **pick(config.model, ("d_model", "n_layers", "pool", "expand", "ff", "dropout", "prenorm")),
                "layer": layer,
            },
        }
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--s4", required=True)
    ap.add_argument("--ref", required=True, choices=("v3.0.0", "v4"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--length", type=int, default=L_FIX)
    ap.add_argument("--recipes", help="also write the resolved sc09/youtubemix/beethoven recipes to this JSON file")
    P.add_shape_flags(ap, "training")
    ap.add_argument(
        "--override",
        action="append",
        default=[],
        help="a hydra override (repeatable), e.g. optimizer.weight_decay=0.05 or trainer.gradient_clip_val=0.5",
    )
    ap.add_argument(
        "--fresh",
        action="store_true",
        help="a state dict as a new pipeline model has it: the C~ "
        "buffers 0 (C not yet converted; the pipeline's first forward converts it)",
    )
    args = ap.parse_args()
    shape = P.set_shape(args.shape)
    s4, ref = os.path.abspath(args.s4), args.ref
    sys.path.insert(0, s4)
    stubbed = install_stubs()
    import torch
    import train  # noqa: F401  the official SequenceLightningModule
    from omegaconf import OmegaConf

    torch.manual_seed(args.seed)
    overrides = small_overrides(ref) + args.override
    config = compose(s4, overrides)
    sd0 = build_module(config).state_dict()
    sd_np = randomize_state_dict(sd0, args.seed, ref)
    if args.fresh:  # C as drawn, not C~: the buffer length 0 says so, as in a new model
        sd_np = {k: np.zeros_like(v) if k.rsplit(".", 1)[-1] in ("l_kernel", "L") else v for k, v in sd_np.items()}
    rng = np.random.default_rng([args.seed, 777])
    x_np = rng.integers(0, 1 << P.BITS, size=(BATCH, args.length), dtype=np.int64)
    y_np = rng.integers(0, 1 << P.BITS, size=(BATCH, args.length), dtype=np.int64)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)

    loss0, grads, params, groups, scheduler = training_run(config, sd_np, x, y)
    again = training_run(config, sd_np, x, y)  # the official run is deterministic on CPU
    repeat = max(float(np.abs(again[2][k] - params[k]).max()) for k in params)
    probe = configured_optimizer(compose(s4, overrides + PROBE), sd_np)
    probe_groups = groups_of(probe[0], probe[1])

    arrays = dict(sd_np)
    arrays["train/tokens"], arrays["train/targets"] = x_np, y_np
    arrays["train/loss_f64"] = np.array(loss0, dtype=np.float64)
    arrays.update({f"grad/{k}": v for k, v in grads.items()})
    arrays.update({f"step3/{k}": v for k, v in params.items()})
    os.makedirs(args.out, exist_ok=True)
    stem = args.name or f"training_{ref}"
    npz = os.path.join(args.out, f"{stem}.npz")
    np.savez_compressed(npz, **arrays)
    side = {
        "ref": ref,
        "commit": args.commit,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "seed": args.seed,
        "dt_transform": "exp" if ref == "v3.0.0" else "softplus",
        "overrides": overrides,
        "probe_overrides": PROBE,
        "loss": "cross entropy, mean over all B*L positions (the task's loss on SequenceLightningModule.forward((x, "
        "y)))",
        "steps": STEPS,
        "gradient_clip_val": clip_value(config),
        "dtype": "float64 (module .double() before any forward)",
        "optimizer": OmegaConf.to_container(config.optimizer, resolve=True),
        "scheduler": scheduler_info(scheduler),
        "param_groups": groups,
        "probe_param_groups": probe_groups,
        "measured": {"repeat_run_params_max_abs": repeat, "loss_f64": loss0},
        "stubbed_modules": stubbed,
        "files": {"npz": os.path.basename(npz)},
    }
    if args.shape or args.fresh:
        side.update({"shape": shape, "fresh": args.fresh})
    with open(os.path.join(args.out, f"{stem}.json"), "w") as f:
        json.dump(side, f, indent=1, default=str)
    if args.recipes:
        with open(args.recipes, "w") as f:
            json.dump(recipes(s4, args.commit), f, indent=1)
            f.write("\n")
    print(
        json.dumps(
            {
                "ref": ref,
                "loss": loss0,
                "groups": [(len(g["names"]), g["lr"], g["weight_decay"]) for g in groups],
                "probe_groups": [(len(g["names"]), g["lr"], g["weight_decay"]) for g in probe_groups],
                "clip": clip_value(config),
                "repeat": repeat,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()

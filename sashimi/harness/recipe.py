"""Our training recipe beside the official one: each preset's value of every setting the official
sashimi experiments resolve (specs/official_recipes.json, tools/make_training_fixtures.py --recipes)
and the reason for each difference (specs/recipes.json; docs/DESIGN.md, "Training recipe").

A setting passes when both agree, or when they differ and specs/recipes.json gives the reason; an
unexplained difference fails, and so does a reason for a setting that no longer differs.
"""

import dataclasses
import inspect

import specs
from sashimi.core.config import ModelConfig, OptimizerConfig, TrainConfig, preset
from sashimi.harness.verdict import Verdict
from sashimi.model.kernel import SSMKernel
from sashimi.model.lm import SashimiLM
from sashimi.training.optimizer import param_groups

QUANTIZATION = {"mu-law": "mulaw", "linear": "linear"}


def official(name: str) -> dict:
    """The official experiment's settings under our setting names."""
    r = specs.load("official_recipes")[name]
    layer, rates = r["model"]["layer"], set(r["model"]["layer"]["lr"].values())
    grouping = r["train"]["optimizer_param_grouping"]
    return {
        "optimizer": r["optimizer"]["_name_"],
        "lr": r["optimizer"]["lr"],
        "weight_decay": r["optimizer"]["weight_decay"],
        "betas": list(r["optimizer"].get("betas", [0.9, 0.999])),
        "ssm_lr": rates.pop() if len(rates) == 1 else r["model"]["layer"]["lr"],
        "ssm_weight_decay": layer["wd"],
        "bias_and_norm_weight_decay": grouping["bias_weight_decay"] or grouping["normalization_weight_decay"],
        "scheduler": r["scheduler"]["_name_"],
        "plateau_mode": r["scheduler"]["mode"],
        "plateau_factor": r["scheduler"]["factor"],
        "plateau_patience": r["scheduler"]["patience"],
        "plateau_min_lr": r["scheduler"]["min_lr"],
        "plateau_monitor": r["train"]["monitor"],
        "plateau_interval": r["train"]["interval"],
        "grad_clip": r["trainer"]["gradient_clip_val"],
        "accumulate_grad_batches": r["trainer"]["accumulate_grad_batches"],
        "stop": f"max_epochs {r['trainer']['max_epochs']}",
        "ema": r["train"]["ema"],
        "batch_size": r["loader"]["batch_size"],
        "seq_len": r["dataset"]["__l_max"],
        "bits": r["dataset"]["bits"],
        "quantization": QUANTIZATION.get(r["dataset"]["quantization"], r["dataset"]["quantization"]),
        **{k: r["model"][k] for k in ("d_model", "n_layers", "pool", "expand", "ff", "dropout")},
        **{k: layer[k] for k in ("d_state", "n_ssm", "dt_min", "dt_max", "dt_transform")},
    }


def final_norm_decays() -> bool:
    """Whether our groups give the backbone's final LayerNorm (weight and bias) a weight decay when
    one is set: measured on a small model, as the optimizer builds its groups."""
    model = SashimiLM(ModelConfig(d_model=4, n_layers=1, d_state=4))  # mutate: skip any small model: the same groups
    names = {id(p): n for n, p in model.named_parameters()}
    config = dataclasses.replace(OptimizerConfig.from_specs(), weight_decay=0.1)  # mutate: skip any decay > 0
    groups = param_groups(model, 1.0, 1.0, config)  # mutate: skip the rates: any give the same groups (decay is read)
    return any(g["weight_decay"] > 0 for g in groups for p in g["params"] if names[id(p)].startswith("backbone.norm."))


def ours(name: str) -> dict:
    """Our preset's value of the same settings (the defaults `python -m sashimi.train --preset NAME` uses)."""
    p, spec, train = preset(name), OptimizerConfig.from_specs(), TrainConfig()
    model = dataclasses.asdict(ModelConfig(**p["model"]))
    kernel = inspect.signature(SSMKernel).parameters
    return {
        "optimizer": "adamw",
        "lr": p["train"]["lr"],
        "weight_decay": spec.weight_decay,
        "betas": list(spec.betas),
        "ssm_lr": spec.ssm_lr,
        "ssm_weight_decay": spec.ssm_weight_decay,
        "bias_and_norm_weight_decay": final_norm_decays(),
        "scheduler": "plateau",
        "plateau_mode": "min",
        "plateau_factor": spec.plateau_factor,
        "plateau_patience": spec.plateau_patience,
        "plateau_min_lr": 0.0,
        "plateau_monitor": "val/loss",
        "plateau_interval": f"validation (every --eval-every, default {train.eval_every} steps)",
        "grad_clip": train.grad_clip,
        "accumulate_grad_batches": 1,
        "stop": "--max-steps / --max-minutes",
        "ema": 0.0,
        "batch_size": p["train"]["batch_size"],
        "seq_len": p["train"]["seq_len"],
        "bits": p["train"]["bits"],
        "quantization": p["train"]["quantization"],
        **{
            k: model[k]
            for k in ("d_model", "n_layers", "pool", "expand", "ff", "dropout", "d_state", "n_ssm", "dt_transform")
        },
        "dt_min": kernel["dt_range"].default[0],
        "dt_max": kernel["dt_range"].default[1],
    }


def recipe_lines(name: str) -> list[Verdict]:
    """One row per setting of preset `name` against the official experiment of the same name."""
    recipes = specs.load("official_recipes")
    if name not in recipes:
        return []
    source = f"{recipes[name]['source']} at {recipes['commit'][:7]}"
    reasons = specs.load("recipes")["presets"].get(name, {}).get("differences", {})
    theirs, mine = official(name), ours(name)
    rows = []
    for key in theirs:
        same = mine[key] == theirs[key]
        reason = reasons.get(key)
        passed = same != (reason is not None)
        if same:
            comment = "" if reason is None else "a reason is recorded in specs/recipes.json but the values agree"
        else:
            comment = (
                f"kept on purpose: {reason}"
                if reason
                else "unexplained difference: remove it or give its reason in specs/recipes.json"
            )
        rows.append(
            Verdict(
                "recipe",
                f"{name} {key}",
                f"ours {mine[key]}",
                f"official {theirs[key]} ({source})",
                passed,
                comment=comment,
            )
        )
    rows += [
        Verdict(
            "recipe",
            f"{name} {key}",
            "not a setting",
            "a setting of the official recipe",
            False,
            comment="stale reason in specs/recipes.json",
        )
        for key in reasons
        if key not in theirs
    ]
    return rows

"""Training as the official pipeline trains it: its recorded loss, gradients, optimizer groups and
parameters after three steps (tests/published/training_<ref>.npz, tools/make_training_fixtures.py)
against ours from the same weights and batch (docs/DESIGN.md, "Training fixtures").

Our model runs with the pipeline's own parameters as the leaves (`PipelineParameters`): its state
dict goes through the same conversion `interop import` uses (pipeline.convert, which folds the
weight-normed pool linears), so autograd carries our gradient back onto each pipeline name exactly
(the chain rule through the fold, v3's A_imag = -w_imag and its Delta reshape) and the optimizer
steps the parameters the pipeline steps.
"""

import dataclasses
import math
from pathlib import Path

import torch
from torch import nn

import specs
from sashimi.core.config import OptimizerConfig
from sashimi.core.shapes import Float, Int, Tensor
from sashimi.harness.verdict import Verdict, tolerance_bound, within, worst
from sashimi.io import pipeline
from sashimi.io.interop import InteropError, convert_state, pipeline_model
from sashimi.training.metrics import LossModel
from sashimi.training.optimizer import adamw, optimization_step, param_groups

RECORDS = ("train/", "grad/", "step3/")


class PipelineParameters(nn.Module):
    """Our language model driven by the pipeline's parameters, under the pipeline's names.

    forward(x, y) is our training loss (summed over positions, and the count), as LossModel gives it."""

    def __init__(self, state: dict, layout: str, dt_transform: str | None):
        super().__init__()
        # its own copy: a forward writes the buffers (l_kernel, when C~ is made from a fresh C), and
        # another pass built from the same fixture must start from the fixture, not from this one
        state = {k: v.clone() for k, v in state.items()}
        self.layout, self.names = layout, [k for k, v in state.items() if v.is_floating_point()]
        self.buffers_ = {k: v for k, v in state.items() if not v.is_floating_point()}
        self.leaves = nn.ParameterList(nn.Parameter(state[k].double().clone()) for k in self.names)
        lm = pipeline_model(state, layout, dt_transform, torch.float64).model
        for block in lm.modules():  # an activation checkpoint recomputes its block in backward, after
            if hasattr(block, "checkpoint"):  # functional_call has put the module's own parameters back
                block.checkpoint = False
        self.loss_model = [LossModel(lm)]  # in a list: its own parameters are not this module's

    @property
    def lm(self) -> nn.Module:
        return self.loss_model[0].lm

    def named_leaves(self) -> dict[str, nn.Parameter]:
        return dict(zip(self.names, self.leaves, strict=True))  # mutate: skip both are built from one list

    def forward(self, x: Int[Tensor, "B L"], y: Int[Tensor, "B L"]) -> tuple[Float[Tensor, ""], int]:
        ours = convert_state(pipeline.convert({**self.named_leaves(), **self.buffers_}, self.layout), self.lm)
        return torch.func.functional_call(self.loss_model[0], {"lm." + k: v for k, v in ours.items()}, (x, y))


def hyperparameters(group: dict) -> tuple:
    """(lr, weight decay, betas, eps) of an optimizer's group or a recorded one (JSON: betas a list)."""
    return group["lr"], group["weight_decay"], tuple(group["betas"]), group.get("eps", 1e-8)


def our_groups(model: PipelineParameters, lr: float, spec: OptimizerConfig) -> list[dict]:
    """Our optimizer's groups (`param_groups` on our model) carried onto the pipeline's parameters:
    each pipeline parameter takes the group of the parameter of ours that it feeds."""
    names = {id(p): n for n, p in model.lm.named_parameters()}
    groups = param_groups(model.lm, lr, spec.ssm_lr, spec)
    ours = {names[id(p)]: i for i, group in enumerate(groups) for p in group["params"]}
    groups = [{**g, "params": []} for g in groups]
    for name, leaf in model.named_leaves().items():
        groups[ours[pipeline.our_parameter(name, model.layout)]]["params"].append(leaf)
    return [g for g in groups if g["params"]]


def group_rows(
    stem: str, model: PipelineParameters, recorded: list[dict], what: str, lr: float, spec: OptimizerConfig, known: dict
) -> Verdict:
    """Every parameter under the same hyperparameters (lr, weight decay, betas, eps) in our groups as
    in the pipeline's, but for the differences `known` names with their reason (specs/recipes.json,
    "param_groups"): exactly those differ. Groups may be merged where their hyperparameters agree."""
    theirs = {n: hyperparameters(g) for g in recorded for n in g["names"]}
    ours = {}
    optimizer = adamw(our_groups(model, lr, spec), spec)
    leaf_name = {id(v): k for k, v in model.named_leaves().items()}
    for g in optimizer.param_groups:
        ours.update({leaf_name[id(p)]: hyperparameters(g) for p in g["params"]})
    differ = sorted(n for n in set(theirs) | set(ours) if ours.get(n) != theirs.get(n))
    unexpected = [f"{n}: ours {ours.get(n)} vs {theirs.get(n)}" for n in differ if n not in known]
    vanished = [f"{n} no longer differs" for n in known if n not in differ]
    kinds = sorted(set(theirs.values()))
    comment = "; ".join(
        unexpected[:4] + vanished + [f"{n} differs on purpose: {known[n]}" for n in differ if n in known][:1]
    )
    return Verdict(
        "published",
        f"{stem}: param groups ({what})",
        f"{len(differ)} of {len(theirs)} differ",
        f"{len(known)} (known; (lr, wd, betas, eps) of the pipeline's {len(recorded)} groups: {kinds})",
        not unexpected and not vanished,
        comment=comment,
    )


def check_training(path: Path, arrays: dict, meta: dict) -> list[Verdict]:
    """Loss, every gradient and every parameter after the steps (training_float64, relative to the
    largest entry of each), and the parameter groups for the experiment's and the probe's settings."""
    for key in ("train/tokens", "train/targets", "train/loss_f64"):
        if key not in arrays:
            raise InteropError(f"{path}: training fixture lacks {key!r}")
    for key in ("param_groups", "probe_param_groups", "optimizer", "steps"):
        if key not in meta:
            raise InteropError(f"{path}: training fixture's sidecar {path.with_suffix('.json')} lacks {key!r}")
    state = {k: torch.from_numpy(v) for k, v in arrays.items() if not k.startswith(RECORDS)}
    layout = pipeline.detect_layout(state)
    x, y = (torch.from_numpy(arrays[k]) for k in ("train/tokens", "train/targets"))
    stem, results = path.stem, []

    def compare(name, ours, theirs):
        results.append(
            within("published", f"{stem}: {name}", ours, theirs, tolerance_bound("training_float64", theirs))
        )

    model = PipelineParameters(state, layout, meta.get("dt_transform"))
    model.lm.train()  # mutate: skip the fixtures' dropout is 0: train and eval compute the same (as sashimi.train)
    loss_sum, count = model(x, y)
    loss = loss_sum / count
    loss.backward()
    compare("loss (float64)", loss.detach(), arrays["train/loss_f64"])
    leaves = model.named_leaves()
    for name in sorted(k[len("grad/") :] for k in arrays if k.startswith("grad/")):
        grad = leaves[name].grad if name in leaves else None
        compare(f"gradient {name}", torch.zeros(0) if grad is None else grad, arrays[f"grad/{name}"])

    known = specs.load("recipes")["param_groups"].get(meta.get("ref"), {})
    base = OptimizerConfig.from_specs()
    experiment = meta["optimizer"]
    spec = dataclasses.replace(
        base, weight_decay=experiment["weight_decay"], betas=tuple(experiment.get("betas", base.betas))
    )
    results.append(
        group_rows(
            stem,
            model,
            meta["param_groups"],
            f"experiment: lr {experiment['lr']}, weight decay {experiment['weight_decay']}",
            experiment["lr"],
            spec,
            known.get("experiment", {}),
        )
    )
    probe = dict(o.split("=") for o in meta.get("probe_overrides", []))
    probe_spec = dataclasses.replace(spec, weight_decay=float(probe["optimizer.weight_decay"]))
    results.append(
        group_rows(
            stem,
            model,
            meta["probe_param_groups"],
            f"probe: lr {probe['optimizer.lr']}, weight decay {probe['optimizer.weight_decay']}",
            float(probe["optimizer.lr"]),
            probe_spec,
            known.get("probe", {}),
        )
    )

    results.append(train_step_row(stem, state, layout, meta, arrays, x, y, spec))
    fresh = PipelineParameters(state, layout, meta.get("dt_transform"))
    fresh.lm.train()  # mutate: skip the fixtures' dropout is 0: train and eval compute the same (as sashimi.train)
    optimizer = adamw(our_groups(fresh, experiment["lr"], spec), spec)
    clip = meta.get("gradient_clip_val")
    for _ in range(int(meta["steps"])):
        optimization_step(fresh, fresh, optimizer, x, y, math.inf if clip is None else float(clip))
    after = fresh.named_leaves()
    for name in sorted(k[len("step3/") :] for k in arrays if k.startswith("step3/")):
        compare(
            f"parameter after {meta['steps']} steps {name}",
            after[name].detach() if name in after else torch.zeros(0),
            arrays[f"step3/{name}"],
        )
    return results


def train_step_row(
    stem: str, state: dict, layout: str, meta: dict, arrays: dict, x: Tensor, y: Tensor, spec: OptimizerConfig
) -> Verdict:
    """The steps as `sashimi.train` takes them: the imported model with the file's weight-normed pools
    (`interop import --parametrization pipeline`), our optimizer's groups and `optimization_step`; every
    parameter after the steps against the pipeline's (each within training_float64 of its largest entry)."""
    lm = pipeline_model(state, layout, meta.get("dt_transform"), torch.float64, parametrization="pipeline").model
    lm.train()  # mutate: skip the fixtures' dropout is 0: train and eval compute the same (train: as sashimi.train)
    optimizer = adamw(param_groups(lm, meta["optimizer"]["lr"], spec.ssm_lr, spec), spec)
    clip = meta.get("gradient_clip_val")
    for _ in range(int(meta["steps"])):
        optimization_step(LossModel(lm), lm, optimizer, x, y, math.inf if clip is None else float(clip))
    ours = {k: v.detach() for k, v in lm.state_dict().items()}
    rows = []
    for name in sorted(k[len("step3/") :] for k in arrays if k.startswith("step3/")):
        theirs = arrays[f"step3/{name}"]
        got = pipeline.pipeline_value(name, ours, layout, theirs.shape)
        rows.append(within("published", name, got, theirs, tolerance_bound("training_float64", theirs)))
    last = worst(rows)
    return Verdict(
        "published",
        f"{stem}: {meta['steps']} steps of sashimi.train's own step (pool weights as the pipeline's g, v)",
        f"{sum(r.passed for r in rows)} of {len(rows)} parameters within; worst {last.name}: {last.measured}",
        f"every parameter {last.expected} (training_float64, relative to its largest entry)",
        all(r.passed for r in rows),
        error=last.error,
        bound=last.bound,
    )

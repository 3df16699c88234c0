"""The optimizer, the schedule and one optimization step (docs/DESIGN.md, "Optimizer and schedule").

Every constant comes from `OptimizerConfig` (specs/presets.json "optimizer").
"""

import math

import torch
import torch.distributed as dist
from torch import nn

from sashimi.core.config import OptimizerConfig
from sashimi.core.shapes import Int, Tensor
from sashimi.model.blocks import ScalarNorm

SSM_PARAMETERS = ("inv_dt", "A_real", "A_imag", "B", "P")


def decays(name: str, owner: nn.Module) -> bool:
    """Whether weight decay applies to a non-SSM parameter. As the official pipeline's
    `add_optimizer_hooks` (run on its backbone only): not on the backbone's biases nor on its
    LayerNorms (nn.LayerNorm, and ScalarNorm's m and s, which it marks itself); the embedding and
    the decoder's bias do decay."""
    return not (
        name.startswith("backbone.") and (name.endswith("bias") or isinstance(owner, (nn.LayerNorm, ScalarNorm)))
    )


def param_groups(model: nn.Module, lr: float, ssm_lr: float, spec: OptimizerConfig) -> list[dict]:
    """The SSM parameters (Delta, A, B, P) get their own learning rate and weight decay; with a
    weight decay, the backbone's biases and LayerNorm parameters go to a third group without it."""
    owners = {
        id(p): m for m in model.modules() for p in m.parameters(recurse=False)
    }  # mutate: skip with recurse=True each module's own parameters are still written last: the same map
    ssm, rest, undecayed = [], [], []
    for name, p in model.named_parameters():
        if name.rsplit(".", 1)[-1] in SSM_PARAMETERS and ".kernel." in name:
            ssm.append(p)
        else:
            (rest if spec.weight_decay == 0 or decays(name, owners[id(p)]) else undecayed).append(p)
    groups = [
        {"params": rest, "lr": lr, "weight_decay": spec.weight_decay},
        {"params": ssm, "lr": ssm_lr, "weight_decay": spec.ssm_weight_decay},
    ]
    return groups + ([{"params": undecayed, "lr": lr, "weight_decay": 0.0}] if undecayed else [])


def adamw(groups: list[dict], spec: OptimizerConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(groups, betas=spec.betas, weight_decay=spec.weight_decay)


def make_optimizer(model: nn.Module, lr: float, ssm_lr: float | None = None, spec: OptimizerConfig | None = None):
    """AdamW over `param_groups` and ReduceLROnPlateau on the validation loss; ssm_lr defaults to the spec's."""
    spec = spec or OptimizerConfig.from_specs()
    ssm_lr = spec.ssm_lr if ssm_lr is None else ssm_lr
    optimizer = adamw(param_groups(model, lr, ssm_lr, spec), spec)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=spec.plateau_factor, patience=spec.plateau_patience
    )  # mode "min", the default: the validation loss falls (the plateau test compares every setting)
    return optimizer, scheduler


def optimization_step(
    loss_model: nn.Module,
    model: nn.Module,
    optimizer,
    x: Int[Tensor, "B L"],
    y: Int[Tensor, "B L"],
    grad_clip: float,
    world: int = 1,
) -> float:
    """One AdamW step on the global mean loss over non-padding positions; returns that loss.

    Across processes the summed loss is divided by the global count and multiplied by the
    number of processes, because DDP averages gradients: the result is the gradient of the
    global mean, the same as one process on the whole batch (docs/DESIGN.md, "Distributed training").
    """
    loss_sum, count = loss_model(x, y)
    totals = torch.tensor([float(loss_sum.detach()), float(count)], dtype=torch.float64, device=x.device)
    if world > 1:
        dist.all_reduce(totals)
    global_count = max(1.0, float(totals[1]))
    (loss_sum * world / global_count).backward()
    loss = float(totals[0]) / global_count
    if math.isfinite(loss):
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss

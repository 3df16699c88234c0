"""The optimizer, the schedule and one optimization step (docs/DESIGN.md, "Optimizer and schedule").

Every constant comes from `OptimizerConfig` (specs/presets.json "optimizer").
"""

import math

import torch
import torch.distributed as dist
from torch import nn

from sashimi.core.config import OptimizerConfig
from sashimi.core.shapes import Int, Tensor

SSM_PARAMETERS = ("inv_dt", "A_real", "A_imag", "B", "P")


def param_groups(model: nn.Module, lr: float, ssm_lr: float, spec: OptimizerConfig) -> list[dict]:
    """The SSM parameters (Delta, A, B, P) get their own learning rate and weight decay."""
    ssm, rest = [], []
    for name, p in model.named_parameters():
        (ssm if name.rsplit(".", 1)[-1] in SSM_PARAMETERS and ".kernel." in name else rest).append(p)
    return [{"params": rest, "lr": lr, "weight_decay": spec.weight_decay}, {"params": ssm, "lr": ssm_lr, "weight_decay": spec.ssm_weight_decay}]


def make_optimizer(model: nn.Module, lr: float, ssm_lr: float | None = None, spec: OptimizerConfig | None = None):
    """AdamW over `param_groups` and ReduceLROnPlateau on the validation loss; ssm_lr defaults to the spec's."""
    spec = spec or OptimizerConfig.from_specs()
    ssm_lr = spec.ssm_lr if ssm_lr is None else ssm_lr
    optimizer = torch.optim.AdamW(param_groups(model, lr, ssm_lr, spec), betas=spec.betas, weight_decay=spec.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=spec.plateau_factor, patience=spec.plateau_patience)
    return optimizer, scheduler


def optimization_step(
    loss_model: nn.Module, model: nn.Module, optimizer, x: Int[Tensor, "B L"], y: Int[Tensor, "B L"], grad_clip: float, world: int = 1
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

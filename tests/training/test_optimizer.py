"""The optimizer: the SSM parameter group; one optimization step equals the float64 NumPy one of
`reference.optimizer` (mean loss over non-padding positions, gradient clip, AdamW)."""

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import specs
from reference import optimizer as ref_optimizer
from sashimi.core.config import ModelConfig, OptimizerConfig
from sashimi.harness.verdict import assert_close
from sashimi.model.lm import SashimiLM
from sashimi.training import optimizer

IGNORE = -100


def test_ssm_parameters_get_their_own_group():
    model = SashimiLM(ModelConfig(d_model=4, n_layers=1, d_state=4))
    groups = optimizer.param_groups(model, lr=0.004, ssm_lr=0.001, spec=OptimizerConfig.from_specs())
    ssm_names = {n for n, p in model.named_parameters() if any(p is q for q in groups[1]["params"])}
    assert groups[1]["lr"] == 0.001 and groups[1]["weight_decay"] == 0.0 and groups[0]["lr"] == 0.004
    assert ssm_names and all(n.rsplit(".", 1)[-1] in ("inv_dt", "A_real", "A_imag", "B", "P") for n in ssm_names)
    assert len(ssm_names) == 5 * sum(1 for n, _ in model.named_parameters() if n.endswith("kernel.inv_dt"))
    assert not any(n.endswith(("kernel.C", "layer.D")) for n in ssm_names)


@pytest.mark.parametrize("norm", ["layer", "scalar"])
def test_weight_decay_spares_the_backbone_biases_and_norms(norm):
    """As the official pipeline groups them: with a weight decay, the backbone's biases and norm
    parameters go without it; the embedding, the decoder (bias too) and the other weights decay."""
    model = SashimiLM(ModelConfig(d_model=4, n_layers=1, d_state=4, norm=norm))
    spec = dataclasses.replace(OptimizerConfig.from_specs(), weight_decay=0.1)
    groups = optimizer.param_groups(model, lr=0.004, ssm_lr=0.001, spec=spec)
    decay = {
        n: g["weight_decay"] for g in groups for n, p in model.named_parameters() if any(p is q for q in g["params"])
    }
    assert len(decay) == len(list(model.parameters())) and len(groups) == 3
    spared = {n for n, d in decay.items() if d == 0.0 and ".kernel." not in n}
    norms = {n for n in decay if n.startswith("backbone.") and (".norm." in n or n.startswith("backbone.norm."))}
    biases = {n for n in decay if n.startswith("backbone.") and n.endswith("bias")}
    assert norms and biases and spared == norms | biases
    assert decay["encoder.embedding.weight"] == decay["decoder.output_transform.bias"] == 0.1
    assert [g["weight_decay"] for g in optimizer.param_groups(model, 0.004, 0.001, OptimizerConfig.from_specs())] == [
        0.0,
        0.0,
    ]


class TableLM(nn.Module):
    """A stand-in model: the logits of token t are row t of a table (float64)."""

    def __init__(self, C: int, seed: int):
        super().__init__()
        self.table = nn.Parameter(torch.randn(C, C, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))


class SummedLoss(nn.Module):
    """What LossModel returns for the stand-in: (summed cross-entropy over non-padding, their count)."""

    def __init__(self, lm: TableLM):
        super().__init__()
        self.lm = lm

    def forward(self, x, y):
        logits = self.lm.table[x].reshape(-1, self.lm.table.shape[1])
        return F.cross_entropy(logits, y.reshape(-1), reduction="sum", ignore_index=IGNORE), int((y != IGNORE).sum())


@pytest.mark.parametrize("grad_clip", [0.05, 1e9])
def test_optimization_steps_equal_plain_mean_loss_clip_and_adamw(grad_clip):
    """Three steps with padding in every batch; with the clip at 0.05 it acts, at 1e9 it does not."""
    spec, C, lr = OptimizerConfig.from_specs(), 6, 0.01
    gen = torch.Generator().manual_seed(1)
    batches = []
    for b in range(3):
        x, y = torch.randint(0, C, (2, 5), generator=gen), torch.randint(0, C, (2, 5), generator=gen)
        y[b % 2, : b + 1] = IGNORE
        batches.append((x, y))
    model = TableLM(C, seed=0)
    arrays = [(x.numpy(), y.numpy()) for x, y in batches]
    table, expected_losses = ref_optimizer.optimization_steps(
        model.table.detach().numpy(), arrays, lr, grad_clip, spec.betas, spec.weight_decay
    )
    expected = torch.from_numpy(table)
    opt, _ = optimizer.make_optimizer(model, lr)
    got_losses = [optimizer.optimization_step(SummedLoss(model), model, opt, x, y, grad_clip) for x, y in batches]
    assert_close(torch.tensor(got_losses), torch.tensor(expected_losses), "reference_identities_float64")
    assert_close(model.table.detach(), expected, "reference_identities_float64")
    assert all(p.grad is None for p in model.parameters())  # nothing carried into the next step
    if grad_clip < 1:  # the premise: this clip changes the result
        unclipped, _ = ref_optimizer.optimization_steps(
            TableLM(C, seed=0).table.detach().numpy(), arrays, lr, 1e9, spec.betas, spec.weight_decay
        )
        assert float(np.abs(unclipped - table).max()) > 1e-4


def test_a_non_finite_loss_skips_the_update():
    model = TableLM(4, seed=0)
    before = copy.deepcopy(model.table.detach())
    with torch.no_grad():
        model.table[0, 0] = math.inf
    opt, _ = optimizer.make_optimizer(model, 0.01)
    x, y = torch.zeros(1, 3, dtype=torch.long), torch.tensor([[1, 2, 3]])
    loss = optimizer.optimization_step(SummedLoss(model), model, opt, x, y, 1.0)
    assert not math.isfinite(loss)
    assert torch.equal(model.table.detach()[1:], before[1:]) and not opt.state


# --- the plateau schedule against the official pipeline's -------------------------------------


def official_plateau(opt: torch.optim.Optimizer, recipe: str) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """The official pipeline's schedule: its registry maps `plateau` to torch's ReduceLROnPlateau, built
    with the recipe's arguments (specs/official_recipes.json) and torch's defaults for the rest."""
    kwargs = {k: v for k, v in specs.load("official_recipes")[recipe]["scheduler"].items() if k != "_name_"}
    return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)


PLATEAU_SETTINGS = ("mode", "threshold", "threshold_mode", "factor", "patience", "cooldown", "min_lrs", "eps")


@pytest.mark.parametrize("recipe", ["sc09", "youtubemix", "beethoven"])
def test_the_plateau_schedule_has_every_setting_of_the_official_one(recipe):
    model = SashimiLM(ModelConfig(d_model=4, n_layers=1, d_state=4))
    opt, ours = optimizer.make_optimizer(model, 0.004)
    theirs = official_plateau(opt, recipe)
    assert {k: getattr(ours, k) for k in PLATEAU_SETTINGS} == {k: getattr(theirs, k) for k in PLATEAU_SETTINGS}


@pytest.mark.parametrize(
    "start, step, fires",
    [(10.0, -2e-5, True), (0.1, -4e-6, False), (3.0, 1e-6, True)],
    ids=["tiny relative gains at a high loss", "large relative gains at a low loss", "creeping up"],
)
def test_the_plateau_schedule_fires_where_the_official_one_does(start, step, fires):
    """Loss sequences that tell torch's default relative threshold (1e-4 of the best loss) from an
    absolute one: at loss 10, gains of 2e-5 nats a validation add up to 1e-3 only after 50, so the
    pipeline fires after patience + 1; at loss 0.1, gains of 4e-6 nats pass 1e-5 every 3rd one, so it
    never fires. The learning rates after each validation equal the official schedule's."""
    model = SashimiLM(ModelConfig(d_model=4, n_layers=1, d_state=4))
    opt, ours = optimizer.make_optimizer(model, 0.004)
    twin = copy.deepcopy(opt)
    theirs = official_plateau(twin, "sc09")
    seen = []
    for i in range(3 * OptimizerConfig.from_specs().plateau_patience):
        loss = start + step * i
        ours.step(loss)
        theirs.step(loss)
        seen.append(([g["lr"] for g in opt.param_groups], [g["lr"] for g in twin.param_groups]))
    assert all(mine == official for mine, official in seen), next(s for s in seen if s[0] != s[1])
    assert (seen[-1][1] != seen[0][1]) == fires, seen[-1]


def test_the_optimizer_takes_the_specs_betas_and_chunk_size():
    """AdamW's betas are the spec's (a spec with others gets those, not torch's defaults), and the
    chunked loss takes specs/presets.json's batch_chunk_size (its memory bound)."""
    from sashimi.training import metrics

    spec = dataclasses.replace(OptimizerConfig.from_specs(), betas=(0.8, 0.95))
    opt, _ = optimizer.make_optimizer(SashimiLM(ModelConfig(d_model=4, n_layers=1, d_state=4)), 0.004, spec=spec)
    assert all(group["betas"] == (0.8, 0.95) for group in opt.param_groups)
    assert metrics.chunked_options().batch_chunk_size == specs.load("presets")["loss"]["batch_chunk_size"]

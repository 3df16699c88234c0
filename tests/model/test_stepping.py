"""The step protocol: every stepping module implements it with one signature, a mode set on the
language model reaches every S4 layer, and the fused step reads the recurrence through it."""

import inspect

import pytest
import torch

from sashimi.harness.verdict import assert_close
from sashimi.model import backbone, blocks, lm, pool, s4
from sashimi.model.fused import FusedStep
from sashimi.model.rollout import rollout
from sashimi.model.stepping import Steppable
from tests.helpers import ROOT, tiny_config, tokens
from tests.helpers import lm as make_lm

STEPPING = [
    s4.S4Conv,
    s4.S4Layer,
    blocks.FFLayer,
    blocks.ResidualBlock,
    pool.DownPool,
    pool.UpPool,
    backbone.Backbone,
    lm.SashimiLM,
]


@pytest.mark.parametrize("cls", STEPPING, ids=lambda c: c.__name__)
def test_every_stepping_module_has_the_protocols_signatures(cls):
    for name in ("setup_step", "default_state", "step"):
        ours = list(inspect.signature(getattr(cls, name)).parameters.values())
        theirs = list(inspect.signature(getattr(Steppable, name)).parameters.values())
        assert [p.name for p in ours[:1]] == ["self"] and len(ours) == len(theirs), f"{cls.__name__}.{name}{ours}"
        if name == "setup_step":
            assert ours[1].name == "mode" and ours[1].default == "linear", f"{cls.__name__}.setup_step"
        if name == "default_state":
            assert ours[1].name == "batch", f"{cls.__name__}.default_state"


def test_every_module_of_the_model_that_steps_is_listed_and_steppable():
    model = make_lm(0, **tiny_config(8).to_dict())
    stepping = {type(m) for m in model.modules() if hasattr(m, "step")}
    assert stepping <= set(STEPPING), stepping - set(STEPPING)
    assert all(isinstance(m, Steppable) for m in model.modules() if hasattr(m, "step"))


@pytest.mark.parametrize("mode", ["linear", "dense"])
def test_the_mode_set_on_the_model_reaches_every_s4_layer_and_both_equal_the_convolution(mode):
    model = make_lm(1, **tiny_config(8).to_dict()).eval()
    x = tokens(1, 2, 24, 256)
    with torch.no_grad():
        conv = model(x)
    stepped = rollout(model, x, mode)
    assert {m.step_mode for m in model.modules() if isinstance(m, s4.S4Conv)} == {mode}
    assert_close(stepped, conv, "model_step_vs_conv_float64")


def test_the_fused_step_refuses_the_dense_recurrence_and_reads_no_private_state():
    model = make_lm(2, **tiny_config(8).to_dict()).eval()
    model.setup_step("dense")
    with pytest.raises(RuntimeError, match="linear recurrence"):
        FusedStep(model, 1)
    for path in (ROOT / "sashimi" / "model").glob("fused*.py"):
        assert "._step" not in path.read_text(), f"{path.name} reads a module's private step state"

"""Runtime shape checks: a wrong rank, dtype or mismatched dimension names the argument."""

import numpy as np
import pytest
import torch
from jaxtyping import TypeCheckError

from reference import s4 as ref
from sashimi.core.config import ModelConfig, S4Options
from sashimi.model.cauchy import dplr_kernel
from sashimi.model.dplr import dense_bilinear
from sashimi.model.recurrence import ssm_step
from sashimi.model.s4 import S4Layer, fft_conv

c64 = torch.complex64


def dplr_args(H=3, N2=4):
    return [torch.rand(H, 1), *(torch.randn(H, N2, dtype=c64) for _ in range(4))]


def s4_step_args():
    layer = S4Layer(3, S4Options(d_state=8))
    layer.setup_step()
    return layer.step, [torch.randn(2, 3), layer.default_state(2)]


# (family, callable factory, good arguments, index of the argument to break, its name)
CASES = {
    "reference kernel": (
        lambda: ref.kernel_powers,
        lambda: [np.eye(4, dtype=complex), np.ones(4, dtype=complex), np.ones(4, dtype=complex), 5],
        1,
        "B_bar",
    ),
    "reference recurrence": (
        lambda: ref.recurrence,
        lambda: [np.eye(4, dtype=complex), np.ones(4, dtype=complex), np.ones(4, dtype=complex), np.ones(6)],
        2,
        "C",
    ),
    "fast kernel": (lambda: dplr_kernel, lambda: dplr_args() + [7], 3, "B"),
    "discretization": (lambda: dense_bilinear, lambda: dplr_args()[:4], 2, "P"),
    "ssm step": (
        lambda: ssm_step,
        lambda: [torch.zeros(2, 3, 8), torch.zeros(2, 3), torch.zeros(3, 8, 8), torch.zeros(3, 8), torch.zeros(3, 8)],
        1,
        "u",
    ),
    "fft convolution": (lambda: fft_conv, lambda: [torch.randn(2, 5, 3), torch.randn(3, 5)], 1, "K"),
    "layer forward": (lambda: S4Layer(3, S4Options(d_state=8)).forward, lambda: [torch.randn(2, 5, 3)], 0, "u"),
}


def breakages(x):
    """(what, broken value): one more axis, the wrong dtype, the first axis one longer."""
    if isinstance(x, np.ndarray):
        return [("rank", x[None]), ("dtype", np.abs(x).astype(np.int64)), ("dimension", np.concatenate([x, x[:1]]))]
    wrong = torch.int64 if x.is_floating_point() or x.is_complex() else torch.float32
    return [
        ("rank", x[None]),
        ("dtype", x.to(wrong) if not x.is_complex() else x.real.to(torch.int64)),
        ("dimension", torch.cat([x, x[:1]])),
    ]


@pytest.mark.parametrize("family", list(CASES))
@pytest.mark.parametrize("what", ["rank", "dtype", "dimension"])
def test_bad_argument_is_named(family, what):
    make_fn, make_args, index, name = CASES[family]
    if (family, what) == ("layer forward", "dimension"):
        pytest.skip("forward has one tensor argument: nothing to mismatch; step covers the layer (test below)")
    fn, args = make_fn(), make_args()
    fn(*args)  # the good call passes
    broken = dict(breakages(args[index]))[what]
    args[index] = broken
    with pytest.raises(TypeCheckError, match=f"parameter '{name}'"):
        fn(*args)


@pytest.mark.parametrize("what", ["rank", "dtype", "dimension"])
def test_bad_step_argument_is_named(what):
    """Layer step: a state whose batch disagrees with u's is a mismatched dimension."""
    fn, args = s4_step_args()
    fn(*args)
    index = 1 if what == "dimension" else 0
    args[index] = dict(breakages(args[index]))[what]
    with pytest.raises(TypeCheckError, match=f"parameter '{['u', 'state'][index]}'"):
        fn(*args)


@pytest.mark.parametrize("flag, expect_error", [("1", True), ("0", False)])
def test_environment_variable_switches_checks_on(flag, expect_error):
    """Outside the test suite checks are off unless SASHIMI_TYPECHECK=1."""
    import os
    import subprocess
    import sys

    code = "import torch; from sashimi.model.s4 import fft_conv; fft_conv(torch.randn(2, 5, 3), torch.randn(4, 5))"
    result = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "SASHIMI_TYPECHECK": flag}, capture_output=True, text=True
    )
    if expect_error:
        assert "TypeCheckError" in result.stderr and "parameter 'K'" in result.stderr
    else:
        assert "TypeCheckError" not in result.stderr  # unchecked: torch's own broadcasting error instead
        assert result.returncode != 0


def width_cases():
    """(module, its call, a good input, the same input one channel wider): widths bind across calls."""
    from sashimi.model.backbone import Backbone
    from sashimi.model.blocks import FFLayer, ff_block, s4_block
    from sashimi.model.pool import DownPool, UpPool

    # S4Layer.step needs no case: its state (B, H, N) binds H within the call, so jaxtyping names it
    return {
        "DownPool": (DownPool(4, 2, 2), "forward", torch.randn(2, 8, 4)),
        "DownPool.step": (DownPool(4, 2, 2), "step", torch.randn(2, 4)),
        "UpPool": (UpPool(4, 2, 2), "forward", torch.randn(2, 8, 4)),
        "S4Layer": (S4Layer(4, S4Options(d_state=4)), "forward", torch.randn(2, 8, 4)),
        "FFLayer": (FFLayer(4), "forward", torch.randn(2, 8, 4)),
        "ResidualBlock": (s4_block(4, S4Options(d_state=4, n_ssm=1)), "forward", torch.randn(2, 8, 4)),
        "ResidualBlock.step": (ff_block(4, 2, 0.0), "step", torch.randn(2, 4)),
        "Backbone": (
            Backbone(ModelConfig(d_model=4, n_layers=1, pool=[2], ff=0, d_state=4)),
            "forward",
            torch.randn(2, 8, 4),
        ),
        "Backbone.step": (
            Backbone(ModelConfig(d_model=4, n_layers=1, pool=[2], ff=0, d_state=4)),
            "step",
            torch.randn(2, 4),
        ),
    }


@pytest.mark.parametrize("name", list(width_cases()))
def test_a_module_fed_the_wrong_width_names_the_dimension(name):
    """DownPool(4, 2, 2) fed (2, 8, 5): jaxtyping alone sees a consistent call (H = 5) and torch
    fails deep inside with a RuntimeError; the module's own check names H and the width it was built with."""
    from sashimi.core.shapes import ShapeError

    module, method, x = width_cases()[name]
    call = getattr(module, method)
    if method == "step" and hasattr(module, "setup_step"):
        module.setup_step()
    state = [module.default_state(x.shape[0])] if method == "step" else []
    call(x, *state)  # the good width passes
    wide = torch.cat([x, x[..., :1]], -1)
    with pytest.raises(ShapeError, match=rf"^{name}: dimension H \(channels, the last axis\) must be 4, .* got 5"):
        call(wide, *state)

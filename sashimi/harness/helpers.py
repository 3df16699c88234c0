"""The one set of helpers shared by the tests and the harness tools: seeded draws, models built
for checking (with SSM parameters drawn beyond their init ranges), and state dicts as NumPy.

Hypothesis strategies, which only the tests need, live in tests/helpers.py beside these.
"""

import math

import numpy as np
import torch

from reference import layer as ref_layer
from sashimi.core.config import ModelConfig, S4Options
from sashimi.model.blocks import ScalarNorm
from sashimi.model.kernel import SSMKernel
from sashimi.model.lm import SashimiLM
from sashimi.model.s4 import S4Layer


def randomize_ssm_(kernel: SSMKernel, seed: int, l_kernel: int = 0) -> None:
    """Overwrite an SSMKernel's parameters with random draws: Delta across and beyond
    its init range [1e-3, 1e-1], random Lambda, and complex normal B, P, C."""
    rng = np.random.default_rng(seed)
    S, H, N2 = kernel.A_real.shape[0], kernel.H, kernel.N2

    def cnormal(*shape):
        return rng.standard_normal((*shape, 2)) / math.sqrt(2)

    values = {
        "inv_dt": rng.uniform(math.log(1e-4), math.log(1.0), (H, 1)),
        "A_real": rng.uniform(-2.0, 2.0, (S, N2)),
        "A_imag": rng.uniform(-30.0, 30.0, (S, N2)),
        "B": cnormal(1, S, N2),
        "P": cnormal(1, S, N2),
        "C": cnormal(1, H, N2),
    }
    with torch.no_grad():
        for name, value in values.items():
            getattr(kernel, name).copy_(torch.from_numpy(value))
        kernel.l_kernel.fill_(l_kernel)


def numpy_state(module: torch.nn.Module) -> dict:
    """State dict as float64 NumPy arrays, for the reference."""
    return {
        k: (v.detach().cpu().double() if v.is_floating_point() else v.cpu()).numpy().copy()
        for k, v in module.state_dict().items()
    }


def randn(seed: int, *shape, dtype=torch.float64) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape)).to(dtype)


def tokens(seed: int, batch: int, length: int, n_classes: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, n_classes, (batch, length)))


def s4_layer(
    H: int,
    N2: int,
    n_ssm,
    seed: int,
    dtype=torch.float64,
    l_kernel: int = 0,
    device="cpu",
    dt_transform="exp",
    output="glu",
) -> S4Layer:
    """An S4 layer with every parameter drawn from `seed` (SSM parameters beyond the init ranges)."""
    torch.manual_seed(seed)
    layer = S4Layer(H, S4Options(d_state=2 * N2, n_ssm=n_ssm, dt_transform=dt_transform, output=output))
    randomize_ssm_(layer.layer.kernel, seed, l_kernel)
    return layer.to(device=device, dtype=dtype)


def lm(seed: int, dtype=torch.float64, randomize: bool = True, l_output=None, **config) -> SashimiLM:
    """A SashimiLM from ModelConfig fields; with `randomize`, every S4 kernel's parameters are
    drawn beyond their init ranges (C fresh, l_kernel 0)."""
    torch.manual_seed(seed)
    model = SashimiLM(ModelConfig(**config), l_output=l_output)
    if randomize:
        for i, module in enumerate(m for m in model.modules() if isinstance(m, SSMKernel)):
            randomize_ssm_(module, seed + i)
        rng = np.random.default_rng(seed)
        with torch.no_grad():  # the scalar norm's m and s away from their init 0 and 1
            for module in model.modules():
                if isinstance(module, ScalarNorm):
                    module.m.fill_(rng.uniform(-0.5, 0.5))
                    module.s.fill_(rng.uniform(0.5, 1.5))
    return model.to(dtype)


def tiny_config(bits: int) -> ModelConfig:
    """The smallest model with every layout feature: two pools, S4 and FF blocks, tied state."""
    return ModelConfig(bits=bits, d_model=8, n_layers=1, pool=[2, 2], expand=2, ff=2, n_ssm=1, d_state=8)


def kernel_condition(layer: S4Layer, L: int) -> float:
    """The condition the float64 rows built on an S4 layer's kernel take as an input
    (reference.layer.s4_kernel_condition at length L); 1 for float32, whose rounding of the
    parameters themselves dominates there (`python -m sashimi.harness.tolerances --measure`)."""
    if layer.layer.kernel.inv_dt.dtype != torch.float64:
        return 1.0
    return ref_layer.s4_kernel_condition(numpy_state(layer), L, layer.layer.kernel.dt_transform)

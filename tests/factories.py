"""The one place that builds models for tests."""

import torch

from sashimi.s4 import S4Layer
from tests.strategies import randomize_ssm_


def s4_layer(H: int, N2: int, n_ssm, seed: int, dtype=torch.float64, l_kernel: int = 0, device="cpu") -> S4Layer:
    """An S4 layer with every parameter drawn from `seed` (SSM parameters beyond the init ranges)."""
    torch.manual_seed(seed)
    layer = S4Layer(H, N=2 * N2, n_ssm=n_ssm)
    randomize_ssm_(layer.layer.kernel, seed, l_kernel)
    return layer.to(device=device, dtype=dtype)


def numpy_state(module: torch.nn.Module) -> dict:
    """State dict as float64 NumPy arrays, for the reference."""
    return {k: (v.detach().cpu().double() if v.is_floating_point() else v.cpu()).numpy().copy() for k, v in module.state_dict().items()}


def lm(seed: int, dtype=torch.float64, randomize: bool = True, l_output=None, **config):
    """A SashimiLM from ModelConfig fields; with `randomize`, every S4 kernel's parameters are
    drawn beyond their init ranges (C fresh, l_kernel 0)."""
    from sashimi.model import ModelConfig, SashimiLM

    torch.manual_seed(seed)
    model = SashimiLM(ModelConfig(**config), l_output=l_output)
    if randomize:
        for i, module in enumerate(m for m in model.modules() if m.__class__.__name__ == "SSMKernel"):
            randomize_ssm_(module, seed + i)
    return model.to(dtype)

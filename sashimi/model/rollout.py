"""The teacher-forced rollout: a step-mode module run over a whole sequence, one position at a time.

Any module of the step protocol (`sashimi.model.stepping.Steppable`: an S4 layer, a block, the
backbone, the language model) gives the same outputs as its convolution-mode forward
on the same inputs; the tests, the gate, `interop check` and `selfcheck` compare the two through
this one loop (docs/DESIGN.md, "Step path").
"""

import torch
from torch import nn

from sashimi.core.shapes import Shaped, Tensor


@torch.no_grad()
def rollout(module: nn.Module, inputs: Shaped[Tensor, "B L *rest"], mode: str = "linear") -> Shaped[Tensor, "B L *out"]:
    """Outputs of `module.step` at every position of `inputs` (position axis 1), from a fresh
    state; `mode` goes to `setup_step` ("dense": the S4 layers' oracle recurrence)."""
    module.setup_step(mode)
    state = module.default_state(inputs.shape[0])
    outputs = []
    for t in range(inputs.shape[1]):
        y, state = module.step(inputs[:, t], state)
        outputs.append(y)
    return torch.stack(outputs, dim=1)

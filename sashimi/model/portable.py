"""The step as one graph of real tensor operations, its schedule data: what `python -m sashimi.export`
writes as ONNX.

`FusedStep` decides in Python which depths of the U-Net run at a sample; a graph exported once
cannot. Here every depth runs at every sample, on the same weights and with the same functions
(`fused.depth_step`), and its results are kept only where `FusedStep` runs it: masks computed
from the step counter, which is part of the state. The numbers kept are the same; the deeper
depths' arithmetic is spent at every sample. The state is plain real tensors (ONNX has no complex
type; the recurrence is already real, as (real, imaginary) parts), one list in a fixed order whose
names `state_names` gives: the counter t, then each depth's DownPool buffer, its pending UpPool
outputs and its recurrence states.
"""

import torch

from sashimi.core.shapes import Float, Int, Tensor
from sashimi.model.fused import FusedStep, depth_step
from sashimi.model.lm import SashimiLM


class PortableStep(torch.nn.Module):
    """`forward(tokens, t, *state) -> (logits, t + 1, *new state)`: `FusedStep.step` with its state
    passed in and out (`initial_state` gives the state before the first sample). Build it after
    `model.setup_step()`; it holds the weights as they were then."""

    def __init__(self, model: SashimiLM):
        super().__init__()
        fused = FusedStep(model, 1)  # mutate: skip its layout and weights are read, never its batch's states
        self.specs, self.pool, self.widths = fused.specs, tuple(fused.pool), fused.widths
        self.n_states = [s.shape[1] for s in fused.states]
        self.d_state2 = model.config.d_state // 2
        for d, weights in enumerate(fused.weights):
            self.register_buffer(f"weights_{d}", weights)
        # constants of the graph (an arange there leaves a node onnxruntime warns of), kept out of state_dict
        for d, P in enumerate(self.pool):
            self.register_buffer(f"places_{d}", torch.arange(P), persistent=False)  # mutate: skip no number moves

    def state_names(self) -> list[str]:
        K = len(self.pool)
        return ["t", *(f"buffer_{d}" for d in range(K)), *(f"pending_{d}" for d in range(K))] + [
            f"state_{d}" for d in range(K + 1)
        ]

    def initial_state(self, batch: int) -> list[Tensor]:
        """Zeros of each state's shape for `batch` sequences, the counter at 0: the state before the
        first sample, as `FusedStep`'s and `SashimiLM.default_state`'s."""
        weights = self.weights_0
        K = len(self.pool)
        buffers = [weights.new_zeros(batch, self.widths[d], self.pool[d]) for d in range(K)]
        pending = [weights.new_zeros(batch, self.widths[d], self.pool[d]) for d in range(K)]
        states = [weights.new_zeros(batch, self.n_states[d], 2, self.widths[d], self.d_state2) for d in range(K + 1)]
        return [torch.zeros((), dtype=torch.long), *buffers, *pending, *states]

    def forward(self, tokens: Int[Tensor, " B"], t: Int[Tensor, ""], *state: Tensor) -> tuple[Tensor, ...]:
        K = len(self.pool)
        buffers, pending, states = list(state[:K]), list(state[K : 2 * K]), list(state[2 * K :])
        weights = [getattr(self, f"weights_{d}") for d in range(K + 1)]
        first = pending[0].index_select(2, (t % self.pool[0]).reshape(1))[..., 0] if K else None
        x, logits, states[0] = depth_step(tokens, first, states[0], weights[0], self.specs[0])
        period, due = 1, torch.ones((), dtype=torch.bool)
        for d in range(1, K + 1):
            P = self.pool[d - 1]
            slot = getattr(self, f"places_{d - 1}") == ((t + 1) // period - 1) % P  # this sample's place at depth d - 1
            buffers[d - 1] = torch.where(due & slot, x[..., None], buffers[d - 1])
            period *= P
            due = due & ((t + 1) % period == 0)
            later = None
            if d < K:
                later = pending[d].index_select(2, (((t + 1) // period - 1) % self.pool[d]).reshape(1))[..., 0]
            x, out, new_states = depth_step(buffers[d - 1], later, states[d], weights[d], self.specs[d])
            pending[d - 1] = torch.where(due, out, pending[d - 1])
            states[d] = torch.where(due, new_states, states[d])
        return logits, t + 1, *buffers, *pending, *states


def run(step: PortableStep, tokens: Int[Tensor, "B T"]) -> Float[Tensor, "B T C"]:
    """The logits after each of `tokens`' columns, from the initial state: `PortableStep` driven as
    an exported graph is (the state fed back each sample)."""
    state = step.initial_state(tokens.shape[0])
    out = []
    for i in range(tokens.shape[1]):
        logits, *state = step(tokens[:, i], *state)
        out.append(logits)
    return torch.stack(out, 1)

"""The step interface: one protocol for every module that runs one sample at a time.

The published code declares it once (`SequenceModule`); here every stepping module (S4Conv,
S4Layer, FFLayer, ResidualBlock, DownPool, UpPool, Backbone, SashimiLM) implements the same three
methods with the same signatures, and callers (rollout, sampling, the fused step) use nothing else:

  setup_step(mode="linear")   build what stepping needs for the current parameters; "dense" asks
                              the S4 layers for the real (H, N, N) recurrence, their oracle
  default_state(batch)        a fresh state for `batch` sequences
  step(x, state)              one position: (output, new state); the caller's state is unchanged
"""

from typing import Any, Protocol, runtime_checkable

STEP_MODES = ("linear", "dense")


@runtime_checkable
class Steppable(Protocol):
    def setup_step(self, mode: str = "linear") -> None: ...

    def default_state(self, batch: int) -> Any: ...

    def step(self, x: Any, state: Any) -> tuple[Any, Any]: ...

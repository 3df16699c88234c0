"""The model's step as an ONNX graph, and that graph run by onnxruntime (`python -m sashimi.export`).

The graph is `PortableStep` (sashimi/model/portable.py) traced by torch.onnx: the tokens of one
sample, int64 (batch,), and the state in; the logits (batch, classes) and the next state out, real
tensors only (ONNX has no complex type). Inputs: `tokens`, then the state: `t` (the step counter, an
int64 scalar), `buffer_<d>`, `pending_<d>`, `state_<d>`; outputs: `logits`, then each state name
with `_next`. The batch is free. The first state is zeros of each input's shape, `t` = 0; each step
feeds back the `_next` outputs (`OnnxStep`). torch.onnx needs onnx and onnxscript, the runtime
onnxruntime: the `export` extras.
"""

import contextlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from sashimi.core.shapes import Float, Int, Tensor
from sashimi.io.checkpoint import ANSI
from sashimi.model.lm import SashimiLM
from sashimi.model.portable import PortableStep

OPTIMIZE = False  # onnxruntime optimizes the graph itself when it loads it; the exporter's pass doubles the time
NUMPY_TYPES = {"tensor(int64)": np.int64, "tensor(float)": np.float32, "tensor(double)": np.float64}
EXTRAS = "pip install -c constraints.txt '.[export]'"


def missing_extras() -> str | None:
    """The first package of the `export` extras that is not installed, or None."""
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            return name
    return None


def io_names(step: PortableStep) -> tuple[list[str], list[str]]:
    names = step.state_names()
    return ["tokens", *names], ["logits", *(f"{n}_next" for n in names)]


@contextlib.contextmanager
def quiet_exporter():
    """torch.onnx's progress lines and its notes about packages it does not need (torchvision), off."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            open(os.devnull, "w") as null,
            contextlib.redirect_stdout(null),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(model: SashimiLM, path: str | os.PathLike) -> Path:
    """`model`'s step as an ONNX graph written to `path`, in the model's dtype; the model is put in
    eval mode and its recurrence built (`setup_step`). The file is written in place: a caller that
    must never leave half a file stages it (`python -m sashimi.export` writes a hidden file in a
    temporary folder and renames it once onnxruntime has checked it)."""
    model.eval()
    model.setup_step()
    step = PortableStep(model)
    inputs, outputs = io_names(step)
    example = (torch.zeros(2, dtype=torch.long), *step.initial_state(2))
    batch = torch.export.Dim("batch", min=1)
    dynamic = ({0: batch}, None, ({0: batch},) * (len(inputs) - 2))  # forward(tokens, t, *state)
    try:
        with torch.no_grad(), quiet_exporter():
            program = torch.onnx.export(
                step,
                example,
                input_names=inputs,
                output_names=outputs,
                dynamic_shapes=dynamic,
                dynamo=True,
                optimize=OPTIMIZE,
                verbose=False,
            )
            program.save(str(path))
    except Exception as e:  # torch.export's own errors: many kinds, each with pages of advice
        if isinstance(e, OSError):
            raise
        raise RuntimeError(f"torch.onnx could not export the step: {export_failure(e)}") from e
    return Path(path)


def export_failure(e: Exception) -> str:
    """The line of a torch.onnx (or onnxruntime) error that says what failed: the one after its
    "Exception summary" heading (the rest is advice to the exporter's own developers), else its
    first line."""
    lines = [line.strip() for line in ANSI.sub("", str(e)).splitlines() if line.strip()]
    for heading, line in zip(lines, lines[1:]):
        if heading.endswith("Exception summary"):
            return line
    return lines[0] if lines else type(e).__name__


class OnnxStep:
    """An exported step run by onnxruntime, with its state kept here: `step(tokens) -> logits`, as
    `FusedStep.step` (the state starts at zeros, t = 0)."""

    def __init__(self, path: str | os.PathLike, batch: int, threads: int = 1):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: its constant-folding notes are not the user's concern
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own errors (Fail, InvalidGraph, ...) are no RuntimeError
            raise RuntimeError(f"onnxruntime could not load {path}: {export_failure(e)}") from e
        self.path = path
        self.names = [i.name for i in self.session.get_inputs()]
        self.state = [
            np.zeros([batch if isinstance(d, str) else d for d in i.shape], NUMPY_TYPES[i.type])
            for i in self.session.get_inputs()[1:]
        ]

    def step(self, tokens: Int[Tensor, " B"]) -> Float[Tensor, "B C"]:
        try:
            logits, *self.state = self.session.run(None, dict(zip(self.names, [tokens.numpy(), *self.state])))
        except Exception as e:
            raise RuntimeError(f"onnxruntime could not run {self.path}: {export_failure(e)}") from e
        return torch.from_numpy(logits)

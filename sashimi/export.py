"""python -m sashimi.export --onnx OUT.onnx CHECKPOINT: the model's step as an ONNX graph, for runtimes
other than PyTorch (onnxruntime, and others that read ONNX).

The graph is `PortableStep` (sashimi/model/portable.py): the tokens of one sample, int64 (batch,),
and the state in; the logits, float32 (batch, classes), and the next state out. Only real tensors
(ONNX has no complex type). Inputs: `tokens`, then the state: `t` (the step counter, an int64
scalar), `buffer_<d>`, `pending_<d>`, `state_<d>`; outputs: `logits`, then each state name with
`_next`. The batch is free. The first state is zeros of each input's shape, `t` = 0; each step feeds
back the `_next` outputs (`OnnxStep` below does exactly this: a runnable example of driving it).

The file is written under a hidden name and renamed once whole; before that, onnxruntime runs it for
--check-steps samples of random tokens against the model's own step (`SashimiLM.step`) and the run
stops unless every logit lies within the tolerance row `onnx_vs_module_step_float32`. Needs the
`export` extras: pip install -c constraints.txt '.[export]' (onnx, onnxscript, onnxruntime).
"""

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from sashimi.core.cli import Parser, notices
from sashimi.core.config import check_number
from sashimi.core.shapes import Float, Int, Tensor
from sashimi.harness.verdict import compare
from sashimi.io.checkpoint import ANSI, CheckpointError, load_model
from sashimi.model.lm import SashimiLM
from sashimi.model.portable import PortableStep

ROW = "onnx_vs_module_step_float32"
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
    """`model`'s step as an ONNX graph at `path` (written whole or not at all), in the model's dtype;
    the model is put in eval mode and its recurrence built (`setup_step`)."""
    model.eval()
    model.setup_step()
    step = PortableStep(model)
    inputs, outputs = io_names(step)
    example = (torch.zeros(2, dtype=torch.long), *step.initial_state(2))
    batch = torch.export.Dim("batch", min=1)
    dynamic = ({0: batch}, None, ({0: batch},) * (len(inputs) - 2))  # forward(tokens, t, *state)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
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
            program.save(tmp)
        os.replace(tmp, path)
    except Exception as e:  # torch.export's own errors: many kinds, each with pages of advice
        if isinstance(e, OSError):
            raise
        raise RuntimeError(f"torch.onnx could not export the step: {export_failure(e)}") from e
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def export_failure(e: Exception) -> str:
    """The line of a torch.onnx error that says what failed: the one after its "Exception summary"
    heading (the rest is advice to the exporter's own developers), else its first line."""
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
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]
        self.state = [
            np.zeros([batch if isinstance(d, str) else d for d in i.shape], NUMPY_TYPES[i.type])
            for i in self.session.get_inputs()[1:]
        ]

    def step(self, tokens: Int[Tensor, " B"]) -> Float[Tensor, "B C"]:
        logits, *self.state = self.session.run(None, dict(zip(self.names, [tokens.numpy(), *self.state])))
        return torch.from_numpy(logits)


def check_export(model: SashimiLM, path: Path, steps: int, seed: int = 0):
    """onnxruntime's logits over `steps` samples of random tokens (batch 2) against the model's own
    step, judged by the tolerance row ROW (a `Verdict`)."""
    tokens = torch.randint(0, model.config.n_classes, (2, steps), generator=torch.Generator().manual_seed(seed))
    model.setup_step()  # (unchanged weights: the recurrence export_onnx built is reused)
    onnx_step, state, got, want = OnnxStep(path, 2), model.default_state(2), [], []
    with torch.no_grad():
        for t in range(steps):
            logits, state = model.step(tokens[:, t], state)
            want.append(logits)
            got.append(onnx_step.step(tokens[:, t]))
    return compare(torch.stack(got, 1), torch.stack(want, 1), ROW, "export", "onnxruntime vs the model's step")


def make_parser() -> Parser:
    parser = Parser(
        prog="python -m sashimi.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="a checkpoint written by sashimi.train (or sashimi.interop import)")
    parser.add_argument("--onnx", required=True, metavar="OUT.onnx", help="where the graph is written")
    parser.add_argument(
        "--check-steps",
        type=int,
        default=256,
        help="samples onnxruntime runs against the model's own step before the file is kept (default 256; 0: none)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT.onnx (default: refuse)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    with notices():
        return run(args)


def run(args) -> int:
    try:
        check_number("--check-steps", args.check_steps, 0)
        out = Path(args.onnx)
        if out.suffix != ".onnx":
            raise ValueError(f"--onnx takes a path ending in .onnx; got {args.onnx}")
        if out.exists() and not args.overwrite:
            raise ValueError(f"--onnx {out} exists: give a new path, or --overwrite to replace it")
        missing = missing_extras()
        if missing:
            raise ValueError(f"export needs the export extras ({missing} is not installed): {EXTRAS}")
        model, _ = load_model(args.checkpoint)
        start = time.perf_counter()
        print(
            f"exporting the step of {args.checkpoint} ({model.config.bits}-bit, d_model {model.config.d_model}): "
            "torch.onnx traces it, minutes for the paper's models"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as folder:
            staged = export_onnx(model, Path(folder) / out.name)
            if args.check_steps:
                verdict = check_export(model, staged, args.check_steps)
                if not verdict.passed:
                    raise ValueError(
                        f"onnxruntime's logits differ from the model's step by up to {verdict.error:.3g}, over the "
                        f"bound {verdict.bound:.3g} of {ROW}: the export is wrong; nothing was written"
                    )
                print(
                    f"checked: {args.check_steps} samples in onnxruntime against the model's step, worst error "
                    f"{verdict.error:.2g} ({verdict.error / verdict.bound:.2f} of the bound of {ROW})"
                )
            os.replace(staged, out)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")
        return 0
    except (ValueError, CheckpointError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

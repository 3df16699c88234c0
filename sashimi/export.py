"""python -m sashimi.export --onnx OUT.onnx CHECKPOINT: the model's step as an ONNX graph, for runtimes
other than PyTorch (onnxruntime, and others that read ONNX).

The graph (sashimi/io/onnx.py, sashimi/model/portable.py): the tokens of one sample, int64 (batch,),
and the state in; the logits, float32 (batch, classes), and the next state out. Only real tensors
(ONNX has no complex type). Inputs: `tokens`, then the state: `t` (the step counter, an int64
scalar), `buffer_<d>`, `pending_<d>`, `state_<d>`; outputs: `logits`, then each state name with
`_next`. The batch is free. The first state is zeros of each input's shape, `t` = 0; each step feeds
back the `_next` outputs (the README shows the loop in onnxruntime).

The file is written under a hidden name and renamed once whole; before that, onnxruntime runs it for
--check-steps samples of random tokens against the model's own step (`SashimiLM.step`) and the run
stops unless every logit lies within the tolerance row `onnx_vs_module_step_float32`. Needs the
`export` extras: pip install -c constraints.txt '.[export]' (onnx, onnxscript, onnxruntime).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from sashimi.core.cli import Parser, notices
from sashimi.core.config import check_number
from sashimi.harness.verdict import compare
from sashimi.io.checkpoint import CheckpointError, load_model
from sashimi.io.onnx import EXTRAS, OnnxStep, export_onnx, missing_extras
from sashimi.model.lm import SashimiLM

ROW = "onnx_vs_module_step_float32"


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

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
import contextlib
import math
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
from sashimi.model.rollout import rollout

ROW = "onnx_vs_module_step_float32"


def check_export(model: SashimiLM, path: Path, steps: int, seed: int = 0):  # mutate: skip any seed draws tokens
    """onnxruntime's logits over `steps` samples of random tokens (batch 2) against the model's own
    step (`rollout`), judged by the tolerance row ROW (a `Verdict`)."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.config.n_classes, (2, steps), generator=generator)  # mutate: skip any tokens do
    want = rollout(model, tokens)
    onnx_step = OnnxStep(path, 2)
    got = torch.stack([onnx_step.step(tokens[:, t]) for t in range(steps)], 1)
    return compare(got, want, ROW, "export", "onnxruntime vs the model's step")


def fewest_check_steps(model: SashimiLM) -> int:
    """Samples after which the deepest depth's output has reached the logits: two of its periods
    (the UpPools' causal shift), and one more."""
    return 2 * math.prod(model.config.pool) + 1


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
    made: list[Path] = []  # the folders this run makes, innermost first: removed again if it fails
    try:
        check_number("--check-steps", args.check_steps, 0)
        out = Path(args.onnx)
        if out.suffix.lower() != ".onnx":
            raise ValueError(f"--onnx takes a path ending in .onnx; got {args.onnx}")
        if out.exists() and not args.overwrite:
            raise ValueError(f"--onnx {out} exists: give a new path, or --overwrite to replace it")
        missing = missing_extras()
        if missing:
            raise ValueError(f"export needs the export extras ({missing} is not installed): {EXTRAS}")
        model, _ = load_model(args.checkpoint)
        least = fewest_check_steps(model)
        if 0 < args.check_steps < least:
            raise ValueError(
                f"--check-steps {args.check_steps} does not reach the model's deepest depth (pools "
                f"{model.config.pool}): give at least {least}, or 0 for no check"
            )
        start = time.perf_counter()
        print(
            f"exporting the step of {args.checkpoint} ({model.config.bits}-bit, d_model {model.config.d_model}): "
            "torch.onnx traces it, minutes for the paper's models"
        )
        made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
        out.parent.mkdir(parents=True, exist_ok=True)
        # staged beside OUT, so that the rename is atomic (where /tmp is another disk; here it is the same one)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export.") as folder:  # mutate: skip one disk here
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
    except BaseException as e:
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: nothing of this run is left in it
        if isinstance(e, KeyboardInterrupt):
            print("interrupted: nothing written", file=sys.stderr)
            return 130
        if isinstance(e, (ValueError, CheckpointError, OSError, RuntimeError)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())

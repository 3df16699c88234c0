"""python -m sashimi.train: train SaShiMi on a folder of audio (or the embedded synthetic set).

With no arguments: the tiny preset on the embedded synthetic dataset for at most 3 minutes (the
stop of any run given neither --max-steps nor --max-minutes), then one generated sample and the
loss plot, all under runs/<timestamp>/. --resume keeps every setting of the run; a flag given with
it must equal the run's, except the stops, --device, --precision and --sample-seconds, which it
replaces.
Several processes: `torchrun --nproc_per_node=N -m sashimi.train ...` trains with
DistributedDataParallel (gloo on CPU, nccl on CUDA); --batch-size is the global batch.
"""

import argparse
import dataclasses
import sys
import typing

from sashimi.core.cli import Parser, notices
from sashimi.core.config import (
    DEFAULT_PRESET,
    DEMO_MINUTES,
    OptimizerConfig,
    TrainConfig,
    preset,
    preset_names,
)
from sashimi.io.checkpoint import CheckpointError
from sashimi.training.loop import train
from sashimi.training.processes import Processes, error_line


def parse_args(argv: list[str] | None) -> TrainConfig:
    return parse(argv)[0]


def parse(argv: list[str] | None) -> tuple[TrainConfig, frozenset[str]]:
    """The configuration, and the names of the flags given (what --resume compares with the run's)."""
    parser = Parser(
        prog="python -m sashimi.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    helps = {
        "preset": f"model and training preset: {', '.join(preset_names())} (specs/presets.json)",
        "data": "folder of .wav/.flac files, searched recursively (default: the embedded synthetic dataset)",
        "bits": "8 or 16",
        "quantization": "mulaw or linear",
        "sample_rate": "audio is resampled to this rate in Hz",
        "seq_len": "samples per training clip, a multiple of prod(pool)",
        "batch_size": "global batch size",
        "lr": "learning rate of all but the SSM parameters",
        "max_steps": "stop after this many optimizer steps",
        "max_minutes": f"stop after this many minutes of training (inf: no limit; with neither stop given: "
        f"{DEMO_MINUTES:g}, the demo's)",
        "out": "runs are written to OUT/<timestamp>/",
        "resume": "a run folder or checkpoint to continue, bit for bit",
        "init": "start from this checkpoint's weights (ours, or one written by `sashimi.interop import`): weights "
        "only, "
        "fresh optimizer and schedule; its model configuration replaces the preset's",
        "device": "auto, cpu, cuda or cuda:N",
        "seed": "seed of initialization and data order",
        "eval_every": "validate and checkpoint every this many steps",
        "eval_batches": "validation batches per evaluation",
        "ssm_lr": f"learning rate of the SSM parameters (Delta, A, B, P) (default: "
        f"{OptimizerConfig.from_specs().ssm_lr:g}, specs/presets.json optimizer.ssm_lr)",
        "dropout": "dropout probability of every block",
        "grad_clip": "gradient norm clip",
        "sample_seconds": "seconds of audio to generate at the end (0: none)",
        "parametrization": "how the pool linears are trained: plain (their weights) or pipeline (weight-normed, g "
        "and v, as the official pipeline trains them) (default: --init's, else plain)",
        "precision": "float32, or bf16: the blocks' linear layers in bfloat16 under autocast (CPU and CUDA), the S4 "
        "kernel, its FFT convolution, the output head and the loss in float32; validation in float32",
        "allow_changed_data": "with --resume: continue although the data folder's files changed since the checkpoint "
        "(no longer bit for bit)",
    }
    tiny = preset(DEFAULT_PRESET)["train"] | {"dropout": preset(DEFAULT_PRESET)["model"]["dropout"]}
    for f in dataclasses.fields(TrainConfig):
        if f.type is bool:
            parser.add_argument(
                "--" + f.name.replace("_", "-"),
                action="store_true",
                default=argparse.SUPPRESS,
                help=helps.get(f.name),
            )
            continue  # mutate: skip the one bool field is the last: break ends the loop as continue does
        kind = (
            f.type if f.type in (int, float, str) else next(t for t in typing.get_args(f.type) if t is not type(None))
        )
        shown = "" if f.default is None else f" (default: {f.default})"
        if f.name in tiny:  # the preset's value, shown for the default preset
            shown = f" (default: the preset's; {DEFAULT_PRESET}: {tiny[f.name]})"
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=kind,
            default=argparse.SUPPRESS,
            help=helps.get(f.name, "") + shown,
        )
    given = vars(parser.parse_args(argv))
    return TrainConfig(**given), frozenset(given)


def main(argv: list[str] | None = None) -> int:
    try:
        config, given = parse(argv)
        with notices():
            train(config, given)
        return 0
    except KeyboardInterrupt:
        return 130
    except (ValueError, FloatingPointError, CheckpointError, OSError, MemoryError) as e:
        line = error_line(str(e), Processes.from_environment())
        if line:
            print(line, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

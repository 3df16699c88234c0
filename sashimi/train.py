"""python -m sashimi.train: train SaShiMi on a folder of audio (or the embedded synthetic set).

With no arguments: the tiny preset on the embedded synthetic dataset for at most 3 minutes,
then one generated sample and the loss plot, all under runs/<timestamp>/.
Several processes: `torchrun --nproc_per_node=N -m sashimi.train ...` trains with
DistributedDataParallel (gloo on CPU, nccl on CUDA); --batch-size is the global batch.
"""

import argparse
import dataclasses
import sys
import typing

from sashimi.core.cli import Parser, notices
from sashimi.core.config import TrainConfig, preset_names
from sashimi.io.checkpoint import CheckpointError
from sashimi.training.loop import train


def parse_args(argv: list[str] | None) -> TrainConfig:
    parser = Parser(
        prog="python -m sashimi.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    helps = {
        "preset": f"model and training preset: {', '.join(preset_names())} (specs/presets.json)",
        "data": "folder of .wav/.flac files, searched recursively (default: the embedded synthetic dataset)",
        "bits": "8 or 16 (default: the preset's)",
        "quantization": "mulaw or linear (default: the preset's)",
        "sample_rate": "audio is resampled to this rate in Hz (default: the preset's)",
        "seq_len": "samples per training clip, a multiple of prod(pool) (default: the preset's)",
        "batch_size": "global batch size (default: the preset's)",
        "lr": "learning rate of all but the SSM parameters (default: the preset's)",
        "max_steps": "stop after this many optimizer steps",
        "max_minutes": "stop after this many minutes of training",
        "out": "runs are written to OUT/<timestamp>/",
        "resume": "a run folder or checkpoint to continue, bit for bit",
        "init": "start from this checkpoint's weights (ours, or one written by `sashimi.interop import`): weights "
        "only, "
        "fresh optimizer and schedule; its model configuration replaces the preset's",
        "device": "auto, cpu, cuda or cuda:N",
        "seed": "seed of initialization and data order",
        "eval_every": "validate and checkpoint every this many steps",
        "eval_batches": "validation batches per evaluation",
        "ssm_lr": "learning rate of the SSM parameters (Delta, A, B, P) (default: specs/presets.json optimizer.ssm_lr)",
        "dropout": "dropout probability of every block (default: the preset's)",
        "grad_clip": "gradient norm clip",
        "sample_seconds": "seconds of audio to generate at the end (0: none)",
        "allow_changed_data": "with --resume: continue although the data folder's files changed since the checkpoint "
        "(no longer bit for bit)",
    }
    for f in dataclasses.fields(TrainConfig):
        if f.type is bool:
            parser.add_argument(
                "--" + f.name.replace("_", "-"), dest=f.name, action="store_true", help=helps.get(f.name)
            )
            continue
        kind = (
            f.type if f.type in (int, float, str) else next(t for t in typing.get_args(f.type) if t is not type(None))
        )
        parser.add_argument(
            "--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=f.default, help=helps.get(f.name)
        )
    return TrainConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_args(argv)
        with notices():
            train(config)
        return 0
    except KeyboardInterrupt:
        return 130
    except (ValueError, FloatingPointError, CheckpointError, OSError, MemoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

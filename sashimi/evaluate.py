"""python -m sashimi.evaluate: the training metrics of a checkpoint on every audio file of a folder.

Files are quantized and clipped exactly as in training (the checkpoint's bits, quantization
and sequence length); metrics are over every non-padding position: loss (nats),
bits_per_sample, bpb, accuracy, accuracy@3/5/10, perplexity; and, as a baseline, the entropy
of the folder's token histogram (a unigram model's bits per sample).
"""

import argparse
import json
import sys

from sashimi.core.cli import Parser, notices, pick_device
from sashimi.core.config import check_number
from sashimi.io.checkpoint import CheckpointError
from sashimi.training.evaluation import evaluate_folder
from sashimi.training.metrics import METRIC_NAMES


def make_parser() -> Parser:
    parser = Parser(
        prog="python -m sashimi.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True, help="folder of .wav/.flac files (searched recursively)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        check_number("--batch-size", args.batch_size, 1)
        with notices():
            result = evaluate_folder(
                args.checkpoint,
                args.data,
                args.batch_size,
                pick_device(args.device),
                log=lambda message: print(message, file=sys.stderr),
                progress=True,
            )
    except (ValueError, CheckpointError, OSError, MemoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(
            f"{result['files']} files, {result['clips']} clips, {result['positions']:,} positions "
            f"({result['seconds']:.1f} s)"
        )
        for key in (*METRIC_NAMES, "unigram_bits_per_sample"):
            print(f"  {key:<24s} {result[key]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""python -m sashimi.generate: sample audio from a trained checkpoint, one sample at a time in step mode.

The recurrence is set up once (never recomputing the convolution per sample); an optional
prefix WAV primes the state; samples are sorted by log-likelihood (best first) and written as
WAV with the checkpoint's quantization decoded, each with a waveform + spectrogram PNG. With a
prefix, each WAV holds the prefix followed by the generated samples.

Each run writes into a fresh folder (default: generated/<timestamp>/ beside the checkpoint); an
--out already holding samples is refused unless --overwrite. Ctrl-C keeps the samples finished so far.

--stream PATH writes one sample while it is generated instead: into a WAV that is valid as it grows,
or with "-" as raw 16-bit little-endian mono PCM on stdout, for a player:
  python -m sashimi.generate --checkpoint CKPT --stream - | aplay -f S16_LE -r 16000 -c 1
(messages then go to stderr; Ctrl-C leaves a valid WAV holding what was drawn).
"""

import argparse
import functools
import sys
import time
from pathlib import Path

import torch

from sashimi.audio.dataset import load_audio
from sashimi.audio.quantize import encode
from sashimi.core.cli import Parser, notices, pick_device
from sashimi.core.config import audio_settings, check_number
from sashimi.core.lock import exclusive
from sashimi.io.checkpoint import CheckpointError, load_model
from sashimi.sampling import stream
from sashimi.sampling.sample import COMPILE_CHOICES, COMPILE_MIN_STEPS
from sashimi.sampling.write import check_generation_fits, generate_to_folder, prepare_folder
from sashimi.training import runs


def make_parser() -> Parser:
    parser = Parser(
        prog="python -m sashimi.generate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", required=True, help="a checkpoint written by sashimi.train (or sashimi.interop import)"
    )
    parser.add_argument("--n-samples", type=int, help="samples to generate (default 4; 1 with --stream)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=float, help="seconds to generate at the checkpoint's sample rate (default 1)")
    length.add_argument("--length", type=int, help="samples to generate")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
    parser.add_argument("--prefix", help="a WAV whose samples prime the model before generation")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bits", type=int, choices=(8, 16), help="refuse a checkpoint of other bits")
    parser.add_argument(
        "--compile",
        choices=tuple(COMPILE_CHOICES),
        default="auto",
        help="how the steps run: auto = the native step on a CPU (built once with the C++ compiler), "
        f"else torch.compile'd step functions from {COMPILE_MIN_STEPS} steps on; on = torch.compile'd; off = "
        "the modules' own step",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--out", help="folder for the WAVs and PNGs (default: a fresh generated/<timestamp>/ beside the checkpoint)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the samples an --out folder already holds, or the --stream file (default: refuse)",
    )
    parser.add_argument(
        "--stream",
        metavar="PATH",
        help="write one sample as it is generated: into PATH, a .wav valid as it grows, or with - as raw 16-bit "
        "little-endian mono PCM on stdout (| aplay -f S16_LE -r RATE -c 1); no folder, no PNG",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    with notices():
        return run(args)


def run(args) -> int:
    started = time.perf_counter()
    streaming = args.stream is not None
    say = functools.partial(print, file=sys.stderr) if streaming else print  # stdout may carry the audio
    try:
        n_samples = args.n_samples if args.n_samples is not None else 1 if streaming else 4
        check_number("--n-samples", n_samples, 1)
        check_number("--batch-size", args.batch_size, 1)
        check_number("--temperature", args.temperature, 0.0, low_open=True)
        check_number("--top-p", args.top_p, 0.0, 1.0, low_open=True)
        check_number("--seconds", args.seconds, 0.0, low_open=True)
        check_number("--length", args.length, 1)
        check_number("--seed", args.seed, 0, 2**63 - 1)
        if streaming:
            if n_samples != 1:
                raise ValueError(f"--stream writes one sample; got --n-samples {n_samples}: leave it out or give 1")
            if args.out:
                raise ValueError("--stream writes one file, --out a folder of samples: give one of them")
            stream.check_target(args.stream, args.overwrite)
        device = pick_device(args.device)
        model, payload = load_model(args.checkpoint, device, args.bits)
        audio = audio_settings(payload["config"].get("train"))
        seconds = 1.0 if args.seconds is None else args.seconds
        n_steps = args.length if args.length is not None else int(round(seconds * audio.sample_rate))
        if n_steps < 1:
            raise ValueError(f"--seconds {seconds} is less than one sample at {audio.sample_rate} Hz")
        prefix = None
        if args.prefix:
            prefix = encode(
                torch.from_numpy(load_audio(args.prefix, audio.sample_rate)), model.config.bits, audio.quantization
            )
            say(
                f"prefix {args.prefix}: {prefix.shape[0]:,} samples at {audio.sample_rate} Hz; each WAV holds them, "
                f"then {n_steps:,} generated samples"
            )
        n_prefix = 0 if prefix is None else prefix.shape[0]
        if streaming:
            check_generation_fits(model, 1, n_steps, n_prefix, 1, "--seconds/--length")
            stream.stream_to(
                model,
                audio.quantization,
                audio.sample_rate,
                args.stream,
                n_steps,
                args.temperature,
                args.top_p,
                prefix,
                args.seed,
                say,
                COMPILE_CHOICES[args.compile],
                started,
                overwrite=args.overwrite,
            )
            return 0
        check_generation_fits(model, n_samples, n_steps, n_prefix, args.batch_size)
        out = Path(args.out) if args.out else runs.new_run_dir(Path(args.checkpoint).parent / "generated")
        try:
            prepare_folder(out, args.overwrite)  # created and checked before its lock is taken in it
            with exclusive(out, "generation"):
                written = generate_to_folder(
                    model,
                    audio.quantization,
                    audio.sample_rate,
                    out,
                    n_samples,
                    n_steps,
                    args.temperature,
                    args.top_p,
                    prefix,
                    args.batch_size,
                    args.seed,
                    compile=COMPILE_CHOICES[args.compile],
                    overwrite=args.overwrite,
                )
        except BaseException:
            if not args.out and out.is_dir() and not any(out.iterdir()):
                out.rmdir()  # the fresh folder of a run that wrote nothing
            raise
        for path in written:
            print(path)
        return 0
    except KeyboardInterrupt:  # generation said what it kept; this exit status is the shell's for Ctrl-C
        return 130
    except (ValueError, CheckpointError, OSError, MemoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

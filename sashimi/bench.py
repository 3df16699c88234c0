"""python -m sashimi.bench: speed and memory of the paper's SaShiMi on this machine.

Preset sc09 (d_model 64, n_layers 8, pool [4, 4], expand 2, ff 2, n_ssm 1, N 64), 8-bit,
B = 1, L = the preset's 16000, all cores, shape checks off unless a case turns them on. Every case runs in a
fresh subprocess, so its peak resident memory (ru_maxrss of that process) is its own: model
build, warm-up and the timed runs. Times are medians after one warm-up run.

Cases: forward (no_grad; the kernel cache warm, as evaluation runs it) and forward with the
kernel recomputed (cache off); forward + backward (cross-entropy on random tokens); generation
in step mode at B = 1 and B = 16 (after setup_step, inference mode); the 16-bit model's
forward + backward with the chunked F.linear_cross_entropy loss; forward + backward with
runtime shape checks (SASHIMI_TYPECHECK=1) vs without.

With --against PATH (a checkout of state-spaces/s4): ours and the official standalone model side by
side, alternating in one run, each case at its best thread count, as ratios: forward, forward +
backward, peak memory, generation at B = 1 and B = 16 through the sampling `generate` uses
(sashimi/harness/against.py). The official code needs einops.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

from sashimi.core.cli import Parser
from sashimi.core.config import preset, preset_names
from sashimi.harness import against
from sashimi.harness.benchmark import CASES, PRESET, log, run_case, spawn, summarize, table
from sashimi.sampling.sample import COMPILE_CHOICES

PRESET_LENGTH = preset(PRESET)["train"]["seq_len"]
MULTIPLE = math.prod(preset(PRESET)["model"]["pool"])


def make_parser() -> Parser:
    parser = Parser(
        prog="python -m sashimi.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="reduced run (L = 800, 2 repeats, 100 generation steps, fewer cases' warm-up cost): about a minute",
    )
    parser.add_argument(
        "--length",
        type=int,
        default=None,
        help=f"sequence length, a multiple of {MULTIPLE}; default the preset's {PRESET_LENGTH} (800 with --quick)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs per case after the warm-up; default 3 (2 with --quick)"
    )
    parser.add_argument(
        "--gen-steps", type=int, default=None, help="generation steps per timed run; default 2000 (100 with --quick)"
    )
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument(
        "--against",
        type=Path,
        help="a checkout of state-spaces/s4: time its standalone SaShiMi beside ours and print ratios",
    )
    parser.add_argument(
        "--compile",
        choices=tuple(COMPILE_CHOICES),
        default="auto",
        help="with --against: our generation as `generate --compile` runs it (auto: the native step on a "
        "CPU; on: torch.compile'd step functions; off: the modules' own step)",
    )
    parser.add_argument(
        "--preset",
        default=PRESET,
        choices=preset_names(),
        help=f"with --against: the model both sides build (default {PRESET}, the paper's 8-bit model)",
    )
    parser.add_argument("--child-against", help=argparse.SUPPRESS)
    return parser


def against_cases(asked: str) -> list[str]:
    """The side-by-side cases of a --cases list: all of them by default (--cases not given), else
    those of the list that the side-by-side run has (the bench's own cases it lacks are left out)."""
    if asked == ",".join(CASES):
        return list(against.CASES)
    return [c for c in asked.split(",") if c in against.CASES]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.child_against:
        print(json.dumps(against.run_child(*json.loads(args.child_against))))
        return 0
    L = args.length if args.length is not None else (800 if args.quick else PRESET_LENGTH)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 3)
    gen_steps = args.gen_steps if args.gen_steps is not None else (100 if args.quick else 2000)
    for flag, value in (("--length", L), ("--repeats", repeats), ("--gen-steps", gen_steps)):
        if value < 1:
            parser.error(f"{flag} must be at least 1; got {value}")
    if L % MULTIPLE:
        parser.error(f"--length must be a multiple of prod(pool) = {MULTIPLE}; got {L}")
    if args.child:
        print(json.dumps(run_case(args.child, L, repeats, gen_steps)))
        return 0
    if args.against is not None:
        if not (args.against / "models" / "sashimi" / "sashimi.py").is_file():
            parser.error(
                f"--against {args.against}: not a checkout of state-spaces/s4 (models/sashimi/sashimi.py not found)"
            )
        cases = against_cases(args.cases)
        try:
            summary = against.compare(
                args.against,
                L,
                repeats,
                gen_steps,
                cases,
                compile=COMPILE_CHOICES[args.compile],
                preset_name=args.preset,
            )
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(json.dumps(summary, indent=1) if args.json else against.table(summary))
        return 0
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {','.join(CASES)}")
    results = {}
    for case in cases:
        log(f"{case}: L = {L}, {repeats} repeats ...")
        start = time.perf_counter()
        results[case] = spawn(case, L, repeats, gen_steps)
        log(
            f"{case}: done in {time.perf_counter() - start:.1f}s; times "
            f"{[round(t, 3) for t in results[case]['times']]}, peak {results[case]['peak_gib']:.2f} GiB"
        )
    summary = summarize(results, L, repeats, gen_steps)
    print(json.dumps(summary, indent=1) if args.json else table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

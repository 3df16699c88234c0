"""python -m sashimi.interop: load the published SaShiMi weights and check that we compute what it computes.

check FIXTURE.npz [--json]   compare our float64 and float32 forward and our teacher-forced step
                             mode with the published outputs recorded in the fixture (a standalone
                             fixture with its FIXTURE.json sidecar, or a pipeline v3/v4 fixture)
import FILE --out CKPT       turn a published state dict into our checkpoint: the official training
                             pipeline's v3 or v4 layout (the released sashimi_*.pt files; a Lightning
                             .ckpt holding one) as a complete language model, or a standalone backbone
                             (fresh embedding and decoder). The layout is read off the keys and the whole
                             configuration off the shapes; no code stored in the file is run.
"""

import argparse
import json
import sys
from pathlib import Path

from sashimi.core.cli import Parser
from sashimi.core.config import PARAMETRIZATIONS, QUANTIZATIONS, SAMPLE_RATE_RANGE, audio_settings, check_number
from sashimi.harness.published import check, other_transform_passes
from sashimi.harness.verdict import print_report
from sashimi.io.checkpoint import CheckpointError
from sashimi.io.interop import DT_DEFAULT_REASON, InteropError, import_file, save_imported


def describe(config) -> str:
    c = config
    return (
        f"{c.bits}-bit, d_model {c.d_model}, n_layers {c.n_layers}, pool {c.pool}, expand {c.expand}, ff {c.ff}, "
        f"n_ssm {c.n_ssm}, d_state {c.d_state}, norm {c.norm}, Delta {c.dt_transform}, S4 output {c.s4_output}, "
        f"pool weights {c.parametrization}"
    )


def json_object(path: Path, what: str) -> dict:
    """The JSON object in `path`; a ValueError naming the file and what is wrong with it."""
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {path} is not valid JSON: {e}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path} is not a text file") from None
    if not isinstance(meta, dict):
        raise ValueError(
            f"{what} {path} holds a JSON {type(meta).__name__}; expected an object of the constructor's keyword "
            'arguments (or {"constructor_kwargs": {...}, "dt_transform": ...})'
        )
    return meta


def run_import(args) -> int:
    check_number("--sample-rate", args.sample_rate, *SAMPLE_RATE_RANGE)
    kwargs, dt_transform, sidecar = None, args.dt_transform, args.file.with_suffix(".json")
    if args.config is not None:
        meta = json_object(args.config, "--config")
        kwargs = meta.get("constructor_kwargs", meta)
    elif args.file.suffix == ".npz" and sidecar.is_file():  # a fixture's sidecar says how it was made
        meta = json_object(sidecar, "the sidecar")
        kwargs = meta.get("constructor_kwargs")
        dt_transform = dt_transform or meta.get("dt_transform")
        print(
            f"read {sidecar} beside it" + (f": dt_transform {meta['dt_transform']}" if meta.get("dt_transform") else "")
        )
    imported = import_file(args.file, kwargs, args.bits, dt_transform, args.parametrization)
    audio = audio_settings({"preset": "sc09"})
    quantization = args.quantization or audio.quantization
    sample_rate = args.sample_rate or audio.sample_rate
    save_imported(imported, args.file, args.out, quantization, sample_rate)
    model = imported.model
    print(f"read {args.file}: {imported.layout} layout")
    print(f"configuration: {describe(model.config)}")
    print(
        f"parameters: {model.num_params():,} (encoder {model.num_params('encoder'):,}, backbone "
        f"{model.num_params('backbone'):,}, decoder {model.num_params('decoder'):,})"
    )
    for note in imported.notes:
        print(f"note: {note}")
    print(
        f"audio: {quantization} quantization at {sample_rate} Hz"
        + ("" if args.quantization else " (the sc09 preset's; --quantization to change)")
    )
    print(f"wrote {args.out}")
    return 0


def make_parser() -> Parser:
    parser = Parser(
        prog="python -m sashimi.interop", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser(
        "check", help="compare against a published fixture (.npz; standalone ones with a .json sidecar)"
    )
    p_check.add_argument("fixture", type=Path)
    p_check.add_argument("--json", action="store_true")
    p_check.add_argument(
        "--dt-transform",
        choices=("exp", "softplus"),
        help="pipeline v4 fixture: Delta = exp or softplus of inv_dt (default: its sidecar's, else exp)",
    )
    p_import = sub.add_parser("import", help="published state dict (.pt, .ckpt or .npz) -> our checkpoint")
    p_import.add_argument(
        "file", type=Path, help="the state dict: pipeline v3/v4 (.pt, Lightning .ckpt) or standalone (.pt, .npz)"
    )
    p_import.add_argument("--out", type=Path, required=True, help="the checkpoint to write")
    p_import.add_argument(
        "--config",
        type=Path,
        help="standalone only, optional: JSON of the published constructor kwargs (or a sidecar holding them); "
        "default: read off the shapes",
    )
    p_import.add_argument(
        "--bits",
        type=int,
        choices=(8, 16),
        help="standalone: classes of the fresh embedding and decoder (default 8); pipeline: must match the file",
    )
    p_import.add_argument(
        "--dt-transform",
        choices=("exp", "softplus"),
        help=f"v4 layout: Delta = exp or softplus of inv_dt ({DT_DEFAULT_REASON})",
    )
    p_import.add_argument(
        "--quantization", choices=QUANTIZATIONS, help="how the model hears audio (default: the sc09 preset's, mulaw)"
    )
    p_import.add_argument("--sample-rate", type=int, help="Hz (default: the sc09 preset's, 16000)")
    p_import.add_argument(
        "--parametrization",
        choices=PARAMETRIZATIONS,
        default="plain",
        help="how `train --init` trains the pool linears: plain (g v / ||v|| folded into W) or pipeline (the "
        "file's weight norm g, v kept and trained, as the official pipeline trains them) (default: plain)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        if args.command == "import":
            return run_import(args)
        results = check(args.fixture, args.dt_transform)
        ok = not any(r.failed for r in results)
        other = None if ok or args.dt_transform else other_transform_passes(args.fixture, results)
        hint = (
            (
                f"every check passes with Delta = {other}(inv_dt): rerun with --dt-transform {other}, or write "
                f'{{"dt_transform": "{other}"}} into {args.fixture.with_suffix(".json")}'
            )
            if other
            else None
        )
        if args.json:
            print(
                json.dumps(
                    {
                        "fixture": str(args.fixture),
                        "ok": ok,
                        "checks": [r.as_dict() for r in results],
                        **({"hint": hint} if hint else {}),
                    },
                    indent=1,
                )
            )
        else:
            print_report(results)
            if hint:
                print(f"note: {hint}")
        return 0 if ok else 1
    except (InteropError, CheckpointError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

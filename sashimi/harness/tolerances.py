"""python -m sashimi.harness.tolerances --measure: every row of specs/tolerances.json against the
error the correct code makes on fresh random cases, drawn as the tests that use the row draw them
(or the published fixtures, for the rows about them). Prints each row's worst case: the error, the
bound atol + rtol max|expected| there, and the headroom bound / error (the smallest over the cases),
which must lie within [2, 100]: under 2x correct code fails by chance, over 100x moderate bugs pass.
Rows that cannot be measured here are a skip saying why (e.g. the CUDA rows without a GPU)."""

import argparse
import math
import os
import sys

import numpy as np
import torch

import specs
from sashimi.core.cli import Parser
from sashimi.harness.tolerance_cases import (
    cauchy_response,
    cauchy_response_and_gradients,
    chunked_cross_entropy,
    evaluate_batching,
    fused_vs_module,
    kernel,
    layer,
    metrics_from_float32,
    model_step_vs_conv,
    model_vs_reference,
    native_vs_module,
    reference_identities,
    step_vs_conv,
)
from sashimi.harness.tolerance_fixtures import (
    first_published_kernel,
    published_float64,
    published_training,
)
from sashimi.harness.verdict import Verdict, print_report, tolerance_bound

LOW, HIGH = 2.0, 100.0  # a bound must lie within [LOW, HIGH] times the worst measured error


FIXED = {
    "interop_float64": published_float64,
    "training_float64": published_training,
    "published_kernel": first_published_kernel(False),
    "published_C_tilde": first_published_kernel(True),
}

MEASURED = {
    "reference_identities_float64": reference_identities,
    "kernel_float64": kernel(torch.float64),
    "kernel_float32": kernel(torch.float32),
    "cauchy_response_float32": cauchy_response,
    "cauchy_response_float64": cauchy_response_and_gradients,
    "layer_float64": layer(torch.float64),
    "layer_float32": layer(torch.float32),
    "step_vs_conv_float64": step_vs_conv(torch.float64),
    "step_vs_conv_float32": step_vs_conv(torch.float32),
    "model_float64": model_vs_reference,
    "model_step_vs_conv_float64": model_step_vs_conv(torch.float64),
    "model_step_vs_conv_float32": model_step_vs_conv(torch.float32),
    "fused_vs_module_step_float64": fused_vs_module(torch.float64),
    "fused_vs_module_step_float32": fused_vs_module(torch.float32),
    "native_vs_module_step_float64": native_vs_module(torch.float64),
    "native_vs_module_step_float32": native_vs_module(torch.float32),
    "chunked_vs_plain_cross_entropy": chunked_cross_entropy,
    "evaluate_vs_training_metrics": evaluate_batching,
    "metrics_float32_logits": metrics_from_float32,
    **FIXED,
}

# rows cheap enough to draw this many times --cases (the near-poles of the Cauchy response are rare)
MORE = {
    "cauchy_response_float32": 50,
    "model_step_vs_conv_float64": 4,
    "reference_identities_float64": 10,
    "chunked_vs_plain_cross_entropy": 10,
    "metrics_float32_logits": 10,
}

NOT_MEASURED = {
    "gradcheck": "torch.autograd.gradcheck's own finite-difference tolerances, not a bound on our error",
    "stability_margin": "strict inequalities (no slack by design), not an error bound",
    **dict.fromkeys(("cuda_vs_cpu_float32", "cuda_vs_cpu_tf32", "cuda_vs_cpu_bf16"), "needs a CUDA device"),
    **dict.fromkeys(
        ("ddp_vs_single_process", "ddp_vs_single_process_moments"), "needs two training processes (the DDP test)"
    ),
    "interop_float32_slack": "multiplies the published float32 error (the 2x rule), not an error of ours",
    "fused_compiled_vs_eager_float32": "needs torch.compile builds (tests/model/test_fused.py)",
    "golden_float64": "rounding across machines and BLAS builds: one machine measures 0",
}


def headroom(row: str, cases: list[tuple]) -> tuple[float, float, float]:
    """(headroom, error, bound) of the worst case: the smallest bound / error. A case is (error,
    scale) or (error, scale, condition)."""
    bounds = [
        (tolerance_bound(row, scale=case[1], condition=case[2] if len(case) > 2 else 1.0), case[0]) for case in cases
    ]
    return min(
        [(b / e if e > 0 else math.inf, e, b) for b, e in bounds],
        default=(math.inf, 0.0, tolerance_bound(row, scale=0.0)),
    )


def measure(rows: list[str], n_cases: int, seed: int) -> list[Verdict]:
    verdicts = []
    for row in rows:
        if row not in MEASURED:
            verdicts.append(
                Verdict(
                    "tolerance", row, NOT_MEASURED.get(row, "no measurement"), f"headroom in [{LOW:g}, {HIGH:g}]", None
                )
            )
            continue
        rng = np.random.default_rng([seed, sum(map(ord, row))])
        if row in FIXED:
            cases = FIXED[row](rng, seed)
        else:
            cases = [MEASURED[row](rng, int(rng.integers(0, 2**31))) for _ in range(n_cases * MORE.get(row, 1))]
        ratio, error, bound = headroom(row, cases)
        verdicts.append(
            Verdict(
                "tolerance",
                row,
                f"worst {error:.2e}, bound {bound:.1e}, headroom {ratio:.3g}x",
                f"headroom in [{LOW:g}, {HIGH:g}]",
                LOW <= ratio <= HIGH,
            )
        )
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="python -m sashimi.harness.tolerances",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--measure", action="store_true", help="measure the rows (without it: list them)")
    parser.add_argument("--rows", nargs="+", help="only these rows")
    parser.add_argument(
        "--cases", type=int, default=30, help="random cases per row (default 30; the cheap rows draw MORE times that)"
    )
    parser.add_argument("--seed", type=int, help="seed of the cases (default: fresh from the OS; printed)")
    args = parser.parse_args(argv)
    if args.seed is not None and args.seed < 0:
        parser.error(f"--seed must be a non-negative integer; got {args.seed}")
    if args.cases < 1:
        parser.error(f"--cases must be at least 1; got {args.cases}")
    table = [row for row in specs.load("tolerances") if not row.startswith("_")]
    rows = args.rows or table
    unknown = sorted(set(rows) - set(table))
    if unknown:
        print(
            f"error: no tolerance rows {unknown} in specs/tolerances.json; known: {', '.join(table)}", file=sys.stderr
        )
        return 2
    if not args.measure:
        print(
            "\n".join(
                f"{row}: {'measured' if row in MEASURED else NOT_MEASURED.get(row, 'not measured')}" for row in rows
            )
        )
        return 0
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    print(f"seed {seed}, {args.cases} cases per row")
    return 0 if print_report(measure(rows, args.cases, seed), "rows") else 1


if __name__ == "__main__":
    sys.exit(main())

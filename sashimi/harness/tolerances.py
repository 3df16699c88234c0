"""python -m sashimi.harness.tolerances --measure: every row of specs/tolerances.json against the
error the correct code makes on fresh random cases, drawn as the tests that use the row draw them
(or the published fixtures, for the rows about them).

Each case uses a share error / bound of its bound (atol + rtol max|expected|, times the case's
condition for the rows that take one). A drawn row passes when
- no case exceeds its bound (a correct case never fails), and
- the headroom at the 90th percentile of the shares (1 / that share) lies within [2, 100]: under
  2x, correct code fails by chance; over 100x, moderate bugs pass.
A rule row (bf16_vs_plain_bf16: FlashAttention's, at most twice a plain bf16 implementation's error)
has no band to fit: it passes when the rule holds at the 90th percentile of the shares. Its cases are
two noisy errors of one size (both round every linear layer to 8 bits), whose ratio has a tail past
the rule on correct code (3.35x in 300 draws), so the worst case is printed but not judged.
A quantile, not the worst case, sets the band because the worst of N draws moves with N (the worst of
5 lies far from the worst of 300); the 90th percentile is estimated from any N >= MIN_CASES, and its
95% confidence interval (from the order statistics, distribution-free) is printed beside it.
The published-fixture rows compare every committed fixture (nothing is drawn): their worst case
must lie within [2, 100]. Rows that cannot be measured here are a skip saying why (e.g. the CUDA rows
without a GPU)."""

import argparse
import math
import os
import sys
import time

import numpy as np
import scipy.stats
import torch

import specs
from sashimi.core.cli import Parser
from sashimi.harness.bf16 import bf16_vs_plain
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
    onnx_vs_module,
    reference_identities,
    step_vs_conv,
)
from sashimi.harness.tolerance_fixtures import (
    first_published_kernel,
    published_float64,
    published_training,
)
from sashimi.harness.verdict import Verdict, print_report, tolerance_bound

LOW, HIGH = 2.0, 100.0  # a bound must lie within [LOW, HIGH] times the error at QUANTILE
QUANTILE = 0.9  # of the drawn cases' shares error / bound
CONFIDENCE = 0.95  # of the interval printed beside the quantile
MIN_CASES = 20  # the fewest --cases: the 90th percentile of 20 draws is the third-worst, not the worst


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
    "onnx_vs_module_step_float32": onnx_vs_module,
    "chunked_vs_plain_cross_entropy": chunked_cross_entropy,
    "evaluate_vs_training_metrics": evaluate_batching,
    "metrics_float32_logits": metrics_from_float32,
    "bf16_vs_plain_bf16": bf16_vs_plain,
    **FIXED,
}

# rows cheap enough to draw this many times --cases: the near-poles of the Cauchy response are rare, and
# the float64 rows' shares spread widely (their 90th percentile is steady from 200 draws, not 20)
MORE = {
    "cauchy_response_float32": 50,
    "cauchy_response_float64": 10,
    "kernel_float64": 10,
    "kernel_float32": 10,
    "layer_float64": 10,
    "step_vs_conv_float64": 10,
    "reference_identities_float64": 10,
    "chunked_vs_plain_cross_entropy": 10,
    "metrics_float32_logits": 10,
}  # mutate: skip how many times more a cheap row draws: a choice of run time (the measure runs it at any count)

# rows too dear to draw --cases times past this many: each ONNX case is a torch.onnx export (10-40 s here)
AT_MOST = {"onnx_vs_module_step_float32": 30}

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
    "drift_float32": "a bound that grows with the length: python -m sashimi.harness.drift measures it (65,536 steps)",
}


def is_rule(row: str) -> bool:
    """A row whose bound is a published rule (FlashAttention's: at most `factor` times a plain
    implementation's error), not a band fitted to our error: its cases give (error, plain error)."""
    return "factor" in specs.load("tolerances")[row]


def shares(row: str, cases: list[tuple]) -> np.ndarray:
    """error / bound of each case, a case being (error, scale), (error, scale, condition) or, for a
    rule row, (error, the plain implementation's error)."""
    out = []
    for case in cases:
        if is_rule(row):
            bound = tolerance_bound(row, plain_error=case[1])
        else:
            bound = tolerance_bound(row, scale=case[1], condition=case[2] if len(case) > 2 else 1.0)
        out.append(case[0] / bound if bound > 0 else (math.inf if case[0] > 0 else 0.0))
    return np.array(out, dtype=float)  # mutate: skip a list of Python floats is float64 without it


def quantile(sorted_shares: np.ndarray, q: float = QUANTILE) -> tuple[float, float, float]:
    """The q-quantile of the shares (nearest rank) and a CONFIDENCE interval for it: the order
    statistics whose ranks a Binomial(n, q) count of draws below the quantile reaches with
    probability (1 - CONFIDENCE) / 2 and (1 + CONFIDENCE) / 2 (clipped to the sample)."""
    n = len(sorted_shares)
    rank = math.ceil(q * n)
    lo = int(scipy.stats.binom.ppf((1 - CONFIDENCE) / 2, n, q))
    hi = int(scipy.stats.binom.ppf((1 + CONFIDENCE) / 2, n, q)) + 1
    return sorted_shares[rank - 1], sorted_shares[max(lo, 1) - 1], sorted_shares[min(hi, n) - 1]


def headroom(share: float) -> float:
    return 1 / share if share > 0 else math.inf


def judge(row: str, cases: list[tuple], drawn: bool) -> Verdict:
    """A drawn row: no case over its bound and the headroom at QUANTILE within [LOW, HIGH]. A fixed
    row (every published fixture, nothing drawn): its worst case within [LOW, HIGH]."""
    share = shares(row, cases)
    expected = f"headroom in [{LOW:g}, {HIGH:g}]"
    if not len(share):
        return Verdict("tolerance", row, "no cases", expected, False)
    worst = int(np.argmax(share))  # mutate: skip NumPy's integer indexes the list as int's does
    error, bound = cases[worst][0], cases[worst][0] / share[worst] if share[worst] > 0 else 0.0
    text = f"worst {error:.2e}, bound {bound:.1e}, headroom {headroom(share[worst]):.3g}x"
    if not drawn:
        return Verdict("tolerance", row, text, f"worst-case {expected}", bool(LOW <= headroom(share[worst]) <= HIGH))
    q, lo, hi = quantile(np.sort(share))
    interval = f"{CONFIDENCE * 100:g}% CI {headroom(hi):.3g}x-{headroom(lo):.3g}x"
    text += f"; q{QUANTILE * 100:g} headroom {headroom(q):.3g}x ({interval}, {len(share)} cases)"
    if is_rule(row):  # the rule is the bound, held at QUANTILE: no band to fit
        return Verdict("tolerance", row, text, f"q{QUANTILE * 100:g} within the rule", bool(q <= 1))
    return Verdict(
        "tolerance",
        row,
        text,
        f"every case within its bound, q{QUANTILE * 100:g} {expected}",
        bool(share[worst] <= 1 and LOW <= headroom(q) <= HIGH),
    )


def measure(rows: list[str], n_cases: int, seed: int, progress=None) -> list[Verdict]:
    verdicts = []
    for row in rows:
        if row not in MEASURED:
            verdicts.append(
                Verdict(
                    "tolerance", row, NOT_MEASURED.get(row, "no measurement"), f"headroom in [{LOW:g}, {HIGH:g}]", None
                )
            )
            continue
        started = time.monotonic()
        rng = np.random.default_rng([seed, sum(map(ord, row))])
        if row in FIXED:
            cases = FIXED[row](rng, seed)  # mutate: skip the fixed rows read fixtures: they take neither
        else:
            n = n_cases * MORE.get(row, 1)
            n = min(n, AT_MOST.get(row, n))
            cases = [MEASURED[row](rng, int(rng.integers(0, 2**31))) for _ in range(n)]
        verdicts.append(judge(row, cases, drawn=row not in FIXED))
        if progress:
            progress(f"{row}: {len(cases)} cases in {time.monotonic() - started:.0f} s")
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
        "--cases",
        type=int,
        default=30,
        help=f"random cases per row, at least {MIN_CASES} (default 30; the cheap rows draw 10 to 50 times that, the "
        f"ONNX row at most {AT_MOST['onnx_vs_module_step_float32']}: an export each)",
    )
    parser.add_argument("--seed", type=int, help="seed of the cases (default: fresh from the OS; printed)")
    args = parser.parse_args(argv)
    if args.seed is not None and args.seed < 0:
        parser.error(f"--seed must be a non-negative integer; got {args.seed}")
    if args.cases < MIN_CASES:
        parser.error(
            f"--cases must be at least {MIN_CASES} (the {QUANTILE * 100:g}th percentile that sets each band needs"
            f" them); got {args.cases}"
        )
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
    started = time.monotonic()
    progress = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731  # mutate: skip progress text
    verdicts = measure(rows, args.cases, seed, progress=progress)
    return 0 if print_report(verdicts, "rows", seconds=time.monotonic() - started) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The one verdict record every reporting command prints, and numeric comparison against the tolerance table.

A verdict says what was measured, what was expected, and whether it passed: `pass`, `FAIL`,
`skip` (could not be measured here), or `note` (a reported, never enforced, claim that does
not hold). The gate, the contract report, `interop check`, `selfcheck`, the benchmark and the
mutation runner all print `Verdict.line()` and close with `summary()`.
"""

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

import specs


@dataclass
class Verdict:
    group: str
    name: str
    measured: str
    expected: str
    passed: bool | None  # None: skipped
    enforced: bool = True  # False: reported only; never fails a command
    comment: str = ""
    error: float | None = None  # numeric comparisons: max |actual - expected| ...
    bound: float | None = None  # ... against this bound
    row: str = ""  # the row of specs/tolerances.json that gave the bound (`compare`) ...
    scale: float | None = None  # ... and max |expected|, which its rtol multiplies

    @property
    def failed(self) -> bool:
        return self.enforced and self.passed is False

    @property
    def word(self) -> str:
        if self.passed is None:
            return "skip"
        if self.passed:
            return "pass"
        return "FAIL" if self.enforced else "note"

    def line(self) -> str:
        text = f"  [{self.word}] {self.group:<9s} {self.name:<70s} {self.measured:<20s} expected {self.expected}"
        return text + (f"\n         {self.comment}" if self.comment else "")

    def as_dict(self) -> dict:
        return asdict(self)


def summary(verdicts: list[Verdict], what: str = "checks", seconds: float | None = None) -> str:
    """'N of M checks pass (k skipped)' and one FAILED line per failure; reported claims that do
    not hold (notes) are counted apart and never fail."""
    failed = [v for v in verdicts if v.failed]
    skipped = sum(v.passed is None for v in verdicts)
    notes = sum(v.word == "note" for v in verdicts)
    took = f" in {seconds:.0f} s" if seconds is not None else ""
    noted = f"; {notes} reported, not enforced, do not hold" if notes else ""
    lines = [
        f"{sum(v.passed is True for v in verdicts)} of {len(verdicts)} {what} pass ({skipped} skipped{noted}){took}"
    ]
    lines += [f"FAILED: {v.group}: {v.name}: measured {v.measured}, expected {v.expected}" for v in failed]
    return "\n".join(lines)


def print_report(verdicts: Iterable[Verdict], what: str = "checks", seconds: float | None = None) -> bool:
    """Print every verdict and the summary; True when none failed."""
    verdicts = list(verdicts)
    for v in verdicts:
        print(v.line())
    print(summary(verdicts, what, seconds))
    return not any(v.failed for v in verdicts)


def as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.is_complex():
            return x.to(torch.complex128).numpy()
        return x.to(torch.float64).numpy()
    return np.asarray(x)


def error_and_scale(actual, expected) -> tuple[float, float]:
    """(max |actual - expected|, max |expected|): the error and the scale a row's rtol multiplies."""
    a, e = as_numpy(actual), as_numpy(expected)
    return float(np.max(np.abs(a - e))), float(np.max(np.abs(e)))


def worst(verdicts: list[Verdict]) -> Verdict:
    """The numeric verdict that uses the largest share of its bound (error / bound; a bound of 0 counts
    its error whole)."""
    return max(verdicts, key=lambda v: v.error / v.bound if v.bound else v.error)


def within(group: str, name: str, actual, expected, bound: float) -> Verdict:
    """max |actual - expected| <= bound (a shape mismatch or a non-finite value fails)."""
    a, e = as_numpy(actual), as_numpy(expected)
    if a.shape != e.shape:
        return Verdict(group, name, f"shape {a.shape}", f"shape {e.shape}", False, error=math.inf, bound=bound)
    error = float(np.max(np.abs(a - e))) if a.size else 0.0
    if not np.isfinite(error):
        error = math.inf
    return Verdict(group, name, f"max diff {error:.2e}", f"<= {bound:.1e}", error <= bound, error=error, bound=bound)


def tolerance_bound(
    tolerance: str, expected=None, scale: float | None = None, plain_error: float = 0.0, condition: float = 1.0
) -> float:
    """The one bound of a row of specs/tolerances.json: atol + rtol * scale * condition + factor *
    plain_error, where scale is max|expected| (or given) and a field the row lacks counts 0:
    `rtol` is always relative to the expected values, times the case's condition number where its
    rounding follows one (a kernel near the unit circle: reference.layer.s4_kernel_condition; 1
    elsewhere), and `factor` always multiplies the error of a plain implementation in the same
    precision against the same reference (FlashAttention's rule): the published float32 one
    (interop_float32_slack), a plain bf16 one (bf16_vs_plain_bf16, sashimi.harness.bf16)."""
    tol = specs.load("tolerances")[tolerance]
    if scale is None:
        e = as_numpy(expected) if expected is not None else np.zeros(0)
        scale = float(np.max(np.abs(e))) if e.size else 0.0
    return tol.get("atol", 0.0) + tol.get("rtol", 0.0) * scale * condition + tol.get("factor", 0.0) * plain_error


def compare(
    actual, expected, tolerance: str, group: str = "compare", name: str | None = None, condition: float = 1.0
) -> Verdict:
    """`within` with the bound of the tolerance table's entry `tolerance` (relative to max|expected|),
    naming the row and the scale it was given, so that the measure can take the case back."""
    e = as_numpy(expected)
    scale = float(np.max(np.abs(e))) if e.size else 0.0
    bound = tolerance_bound(tolerance, scale=scale, condition=condition)
    verdict = within(group, name or tolerance, actual, expected, bound)
    return replace(verdict, row=tolerance, scale=scale)


def assert_close(actual, expected, tolerance: str, condition: float = 1.0) -> None:
    result = compare(actual, expected, tolerance, condition=condition)
    if not result.passed:
        raise AssertionError(
            f"{tolerance}: max abs error {result.error:.3e} vs bound {result.bound:.3e} (measured {result.measured})"
        )

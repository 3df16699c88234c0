"""python -m sashimi.harness.tolerances: every row of the table is measured or says why not, and
a bound fails outside [2, 100] times the worst measured error."""

import itertools

import numpy as np
import pytest
import torch

import specs
from sashimi.harness import tolerance_cases, tolerances


def test_every_row_is_measured_or_says_why_not():
    rows = {row for row in specs.load("tolerances") if not row.startswith("_")}
    assert rows == set(tolerances.MEASURED) | set(tolerances.NOT_MEASURED)
    assert not set(tolerances.MEASURED) & set(tolerances.NOT_MEASURED)


@pytest.mark.parametrize(
    "error, passed", [(1e-6 / 150, False), (1e-6 / 99, True), (1e-6 / 2.1, True), (1e-6 / 1.5, False)]
)
def test_a_bound_outside_2x_to_100x_of_the_worst_error_fails(monkeypatch, error, passed):
    """metrics_float32_logits (rtol 1e-6, atol 0) against fake cases of scale 1: bound 1e-6; the worst
    case decides (an easy one beside it changes nothing)."""
    calls = itertools.count()
    monkeypatch.setitem(
        tolerances.MEASURED,
        "metrics_float32_logits",
        lambda rng, seed: (error, 1.0) if next(calls) == 2 else (error / 10, 1.0),
    )
    [row] = tolerances.measure(["metrics_float32_logits"], 4, seed=0)
    assert row.passed is passed and f"headroom {1e-6 / error:.3g}x" in row.measured


def test_an_unmeasured_row_is_a_skip_with_its_reason_and_the_command_measures(capsys):
    [row] = tolerances.measure(["cuda_vs_cpu_tf32"], 1, seed=0)
    assert row.passed is None and row.measured == "needs a CUDA device"
    assert (
        tolerances.main(
            [
                "--measure",
                "--rows",
                "metrics_float32_logits",
                "chunked_vs_plain_cross_entropy",
                "--cases",
                "2",
                "--seed",
                "5",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("seed 5, 2 cases per row") and "2 of 2 rows pass" in out
    assert tolerances.main(["--rows", "no_such_row"]) == 2


def test_the_seed_reproduces_every_case(monkeypatch, capsys):
    """--seed S twice draws the same cases (the rng a row is given, and each case's seed); another seed
    draws others. A row that records what it is given shows it, through the command."""
    drawn = []
    monkeypatch.setitem(
        tolerances.MEASURED,
        "metrics_float32_logits",
        lambda rng, seed: drawn.append((float(rng.random()), seed)) or (1e-7, 1.0),
    )

    def cases(seed: str) -> list:
        drawn.clear()
        assert tolerances.main(["--measure", "--rows", "metrics_float32_logits", "--cases", "2", "--seed", seed]) == 0
        return list(drawn)

    first = cases("5")
    assert len(first) == 2 * tolerances.MORE["metrics_float32_logits"] and len(set(first)) == len(first)
    assert cases("5") == first
    assert not set(cases("6")) & set(first)


def test_the_metrics_case_compares_with_a_reference_from_the_same_float32_inputs(monkeypatch):
    """metrics_float32_logits measures the float32 metrics' own error: given metrics computed exactly
    (float64 cross-entropy of the float32 inputs it passes), the case measures rounding of float64 only,
    not the ~1e-7 that a reference from the unrounded inputs would add."""

    class Exact:
        def __init__(self, bits):
            pass

        def add(self, x, w, b, y):
            assert x.dtype == w.dtype == b.dtype == torch.float32
            logits = x[0].double() @ w.double().T + b.double()
            self.loss = float(torch.nn.functional.cross_entropy(logits, y[0]))

        def result(self):
            return {"loss": self.loss}

    monkeypatch.setattr(tolerance_cases, "MetricSums", Exact)
    for seed in range(5):
        error, scale = tolerance_cases.metrics_from_float32(np.random.default_rng(seed), seed)
        assert scale > 0.1 and error <= 1e-13 * scale, (seed, error, scale)

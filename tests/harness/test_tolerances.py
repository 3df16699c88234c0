"""python -m sashimi.harness.tolerances: every row of the table is measured or says why not, and
a bound fails outside [2, 100] times the worst measured error."""

import itertools

import pytest

import specs
from sashimi.harness import tolerances


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

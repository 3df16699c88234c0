"""python -m sashimi.harness.tolerances: every row of the table is measured or says why not; a drawn
row fails when a case exceeds its bound or the bound lies outside [2, 100] times the error at the 90th
percentile, a published row outside [2, 100] times its worst fixture."""

import itertools
import math
import re
import runpy
import sys

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
def test_a_bound_outside_2x_to_100x_of_the_error_at_the_90th_percentile_fails(monkeypatch, error, passed):
    """metrics_float32_logits (rtol 1e-6, atol 0) against 20 fake cases of scale 1: bound 1e-6. Three
    cases at `error`, the rest ten times easier: the 90th percentile of 20 (the 18th smallest) is
    theirs; with two, it would be the easier cases' (below)."""
    calls = itertools.count()
    fake = lambda rng, seed: (error, 1.0) if next(calls) in (3, 7, 11) else (error / 10, 1.0)  # noqa: E731
    monkeypatch.setitem(tolerances.MEASURED, "metrics_float32_logits", fake)
    monkeypatch.setitem(tolerances.MORE, "metrics_float32_logits", 1)
    [row] = tolerances.measure(["metrics_float32_logits"], 20, seed=0)
    assert row.passed is passed and f"q90 headroom {1e-6 / error:.3g}x" in row.measured
    assert "20 cases" in row.measured
    calls = itertools.count()
    fake = lambda rng, seed: (error, 1.0) if next(calls) in (3, 7) else (error / 10, 1.0)  # noqa: E731
    monkeypatch.setitem(tolerances.MEASURED, "metrics_float32_logits", fake)
    [row] = tolerances.measure(["metrics_float32_logits"], 20, seed=0)
    assert f"q90 headroom {10e-6 / error:.3g}x" in row.measured


def test_one_case_over_its_bound_fails_the_row_whatever_the_quantile(monkeypatch):
    calls = itertools.count()
    fake = lambda rng, seed: (1.01e-6, 1.0) if next(calls) == 5 else (1e-8, 1.0)  # noqa: E731
    monkeypatch.setitem(tolerances.MEASURED, "metrics_float32_logits", fake)
    monkeypatch.setitem(tolerances.MORE, "metrics_float32_logits", 1)
    [row] = tolerances.measure(["metrics_float32_logits"], 30, seed=0)
    assert row.passed is False and "headroom 0.99x" in row.measured and "q90 headroom 100x" in row.measured


def test_the_quantile_and_its_interval_are_order_statistics_of_a_binomial():
    """The 90th percentile of n shares is the ceil(0.9 n)-th smallest; the 95% interval runs between
    the order statistics that a Binomial(n, 0.9) count reaches with probability 2.5% and 97.5%,
    found here by summing the binomial's terms (math.comb), not scipy."""
    for n in (20, 30, 137, 300):
        shares = np.arange(1, n + 1) / 1000.0
        cdf = np.cumsum([math.comb(n, k) * 0.9**k * 0.1 ** (n - k) for k in range(n + 1)])
        lo = int(np.searchsorted(cdf, 0.025))  # the smallest k with P(count <= k) >= 2.5%
        hi = min(int(np.searchsorted(cdf, 0.975)) + 1, n)
        assert tolerances.quantile(shares) == (math.ceil(0.9 * n) / 1000, lo / 1000, hi / 1000)


def test_a_published_row_is_judged_by_its_worst_fixture():
    cases = [(1e-6 / 3, 1.0), (1e-6 / 50, 1.0)]
    assert tolerances.judge("metrics_float32_logits", cases, drawn=False).passed
    assert not tolerances.judge("metrics_float32_logits", cases[:1] * 1 + [(1e-6 / 1.5, 1.0)], drawn=False).passed


def test_a_fixed_row_of_exact_cases_prints_a_bound_of_zero_and_fails_its_band():
    """Every error 0: the shares are 0, the bound printed is 0 (not 0 / 0), and the headroom is infinite:
    over the band, so a fixed row of exact cases fails (its bound is loose beyond measure)."""
    verdict = tolerances.judge("metrics_float32_logits", [(0.0, 1.0), (0.0, 2.0)], drawn=False)
    assert "worst 0.00e+00, bound 0.0e+00, headroom infx" in verdict.measured and verdict.passed is False


def test_fewer_cases_than_the_minimum_are_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        tolerances.main(["--measure", "--cases", str(tolerances.MIN_CASES - 1)])
    assert stop.value.code == 2
    assert f"error: --cases must be at least {tolerances.MIN_CASES}" in capsys.readouterr().err


def test_an_unmeasured_row_is_a_skip_with_its_reason_and_the_command_measures(monkeypatch, capsys):
    monkeypatch.setattr(tolerances, "MORE", {})  # 20 cases each, not 200
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
                "20",
                "--seed",
                "5",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("seed 5, 20 cases per row") and "2 of 2 rows pass" in out
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
        assert tolerances.main(["--measure", "--rows", "metrics_float32_logits", "--cases", "20", "--seed", seed]) == 0
        return list(drawn)

    first = cases("5")
    assert len(first) == 20 * tolerances.MORE["metrics_float32_logits"] and len(set(first)) == len(first)
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


def test_one_fresh_case_of_every_drawn_row_runs_within_its_bound():
    """What `--measure` draws runs, and correct code lands within the bound on a draw of its own
    (the measure asks the same of every one of its hundreds of cases; seed 7, none the measure's
    acceptance runs used, fixed so that CI does not flake on a tail the measure accepts)."""
    seed = 7
    for row, case in tolerances.MEASURED.items():
        # an ONNX case is an export (tens of seconds): tests/io/test_export.py makes one and holds this row
        if row in tolerances.FIXED or row == "onnx_vs_module_step_float32":
            continue
        rng = np.random.default_rng([seed, sum(map(ord, row))])
        share = tolerances.shares(row, [case(rng, int(rng.integers(0, 2**31)))])[0]
        assert share <= 1, f"{row}: one case used {share:.3g}x of its bound (seed {seed})"


def test_the_shares_headroom_and_verdicts_at_their_edges():
    """A bound of 0 (no atol, scale 0): share 0 for an exact case, infinite for any error; headroom
    of a zero share is infinite; no cases fail; a case exactly at its bound is within it."""
    assert list(tolerances.shares("training_float64", [(0.0, 0.0), (1e-9, 0.0)])) == [0.0, math.inf]
    assert tolerances.headroom(0.0) == math.inf and tolerances.headroom(0.5) == 2.0
    assert tolerances.judge("metrics_float32_logits", [], drawn=True).passed is False
    at_bound = [(1e-6, 1.0)] + [(1e-7, 1.0)] * 19  # rtol 1e-6, atol 0: share exactly 1; q90 10x
    assert tolerances.judge("metrics_float32_logits", at_bound, drawn=True).passed is True


def test_the_measure_goes_on_past_an_unmeasured_row_with_fresh_seeds_and_says_its_progress(monkeypatch):
    seeds, said = [], []

    def case(rng, seed):
        seeds.append(seed)
        return (1e-7, 1.0)

    monkeypatch.setattr(tolerances, "MEASURED", {"metrics_float32_logits": case})
    skipped, measured = tolerances.measure(["gradcheck", "metrics_float32_logits"], 20, 3, progress=said.append)
    assert (skipped.group, skipped.name, skipped.passed) == ("tolerance", "gradcheck", None)
    assert measured.name == "metrics_float32_logits" and len(seeds) == 20 * tolerances.MORE["metrics_float32_logits"]
    assert len(set(seeds)) == len(seeds) and max(seeds) > 2**20  # seeds from [0, 2^31)
    assert said == [said[0]] and said[0].startswith(f"metrics_float32_logits: {len(seeds)} cases in ")


@pytest.mark.parametrize("n_cases, drawn", [(20, 20), (30, 30), (300, 30)])
def test_the_onnx_row_draws_at_most_30_cases(n_cases, drawn, monkeypatch):
    """Each of its cases is an export (tens of seconds): --cases 300 draws 30, fewer draw as asked."""
    calls = []
    monkeypatch.setitem(
        tolerances.MEASURED, "onnx_vs_module_step_float32", lambda rng, seed: calls.append(1) or (0.0, 1.0)
    )
    (verdict,) = tolerances.measure(["onnx_vs_module_step_float32"], n_cases, 1)
    assert len(calls) == drawn and verdict.passed is False  # (0 error everywhere: q90 headroom past the band)


def test_the_command_lists_by_default_measures_30_cases_and_times_itself(monkeypatch, capsys):
    monkeypatch.setattr(tolerances, "MEASURED", {"metrics_float32_logits": lambda rng, seed: (1e-7, 1.0)})
    assert tolerances.main(["--rows", "gradcheck", "metrics_float32_logits"]) == 0
    assert capsys.readouterr().out.startswith("gradcheck: torch.autograd.gradcheck's own")
    assert tolerances.main(["--measure", "--rows", "metrics_float32_logits", "--seed", "4"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("seed 4, 30 cases per row")
    assert err.startswith(f"metrics_float32_logits: {30 * tolerances.MORE['metrics_float32_logits']} cases in ")
    assert float(re.search(r"rows pass \(0 skipped\) in (\S+) s", out)[1]) < 600
    monkeypatch.setattr(sys, "argv", ["tolerances", "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_module("sashimi.harness.tolerances", run_name="__main__")
    assert stop.value.code == 0 and "usage: python -m sashimi.harness.tolerances" in capsys.readouterr().out


def test_a_rule_row_holds_its_rule_at_the_90th_percentile_and_prints_its_worst():
    """bf16_vs_plain_bf16 (factor 2): 18 of 20 cases exactly at twice the plain error and two five
    times past it pass (the 90th percentile's share is exactly 1); every case a tenth past fails."""
    at_rule = [(2e-3, 1e-3)] * 18 + [(1e-2, 1e-3)] * 2
    verdict = tolerances.judge("bf16_vs_plain_bf16", at_rule, drawn=True)
    assert verdict.passed is True and "headroom 0.2x; q90 headroom 1x" in verdict.measured
    assert tolerances.judge("bf16_vs_plain_bf16", [(2.2e-3, 1e-3)] * 20, drawn=True).passed is False

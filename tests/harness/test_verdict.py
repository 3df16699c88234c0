"""The one verdict record: its words, its summary, and numeric comparison against a bound."""

import math

import numpy as np
import pytest

import specs
from sashimi.harness.verdict import Verdict, assert_close, compare, summary, tolerance_bound, within, worst


def test_words_and_failures():
    cases = [
        (True, True, "pass", False),
        (False, True, "FAIL", True),
        (None, True, "skip", False),
        (False, False, "note", False),
        (True, False, "pass", False),
    ]
    for passed, enforced, word, failed in cases:
        v = Verdict("g", "n", "m", "e", passed, enforced=enforced)
        assert (v.word, v.failed) == (word, failed)
        assert v.line().startswith(f"  [{word}] g ")


def test_summary_counts_each_kind_apart():
    verdicts = [
        Verdict("g", "a", "1", "1", True),
        Verdict("g", "b", "2", "1", False),
        Verdict("g", "c", "-", "-", None),
        Verdict("g", "d", "3", "1", False, enforced=False),
    ]
    lines = summary(verdicts).splitlines()
    assert lines == [
        "1 of 4 checks pass (1 skipped; 1 reported, not enforced, do not hold)",
        "FAILED: g: b: measured 2, expected 1",
    ]


def test_within_measures_the_largest_difference():
    v = within("g", "n", np.array([1.0, 2.0, 3.5]), np.array([1.0, 2.5, 3.0]), 0.5)
    assert v.passed and v.error == 0.5 and v.bound == 0.5
    assert not within("g", "n", np.array([1.0]), np.array([1.0 + 1e-9]), 1e-10).passed


@pytest.mark.parametrize("actual", [np.array([np.nan]), np.array([np.inf]), np.array([1.0, 1.0])])
def test_non_finite_or_misshapen_values_fail(actual):
    v = within("g", "n", actual, np.array([1.0]), 1.0)
    assert not v.passed and v.error == math.inf


def test_compare_uses_the_tolerance_table():
    expected = np.array([2.0, -4.0])
    entry = specs.load("tolerances")["kernel_float32"]
    bound = tolerance_bound("kernel_float32", expected)
    assert bound == pytest.approx(entry["atol"] + entry["rtol"] * 4.0)  # max |expected| = 4
    assert compare(expected + 0.9 * bound, expected, "kernel_float32").passed
    assert not compare(expected + 1.1 * bound, expected, "kernel_float32").passed
    with pytest.raises(AssertionError, match="kernel_float32"):
        assert_close(expected + 1.1 * bound, expected, "kernel_float32")


def test_every_bound_is_atol_plus_rtol_times_the_scale_plus_factor_times_the_plain_error(monkeypatch):
    """One formula for every row; a field a row lacks counts 0 (the slack row has a factor, no rtol)."""
    table = {"both": {"rtol": 0.5, "atol": 1.0}, "slack": {"factor": 2.0, "atol": 1e-5}}
    monkeypatch.setattr(specs, "load", lambda name: table)
    assert tolerance_bound("both", np.array([-3.0, 2.0])) == 1.0 + 0.5 * 3.0
    assert tolerance_bound("both", scale=10.0) == 1.0 + 0.5 * 10.0
    assert tolerance_bound("both", np.zeros(0)) == tolerance_bound("both") == 1.0
    assert tolerance_bound("slack", np.array([100.0]), plain_error=3e-6) == pytest.approx(1e-5 + 2.0 * 3e-6)
    assert tolerance_bound("slack", np.array([100.0])) == 1e-5  # no plain error given: none


def test_the_worst_verdict_uses_the_largest_share_of_its_bound():
    """Not the largest error, nor error times bound: 1 of a bound of 10 is worse than 5 of 1000."""
    a, b = within("g", "a", [1.0], [0.0], 10.0), within("g", "b", [5.0], [0.0], 1000.0)
    assert worst([a, b]) is a and worst([b, a]) is a
    zero = within("g", "z", [0.5], [0.0], 0.0)  # a bound of 0: the error counts whole
    assert worst([a, zero]) is zero

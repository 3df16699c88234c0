"""The benchmark's figures from known times: the child replaced by a recorder, the summary's medians
and overhead, each target's verdict, the table's last line."""

import pytest

from sashimi.harness import against, benchmark


def test_a_case_times_our_side_and_takes_the_setup_out_of_generation(monkeypatch):
    asked = []

    def child(side, case, L, repeats, gen_steps, threads, checkout, compile, preset):
        asked.append((side, case, L, repeats, gen_steps, checkout, compile, preset))
        times = {"times": [2.0, 3.0], "peak_gib": 0.5}
        return times if case == "fwd_cached" else {**times, "setup_s": 1.0}

    monkeypatch.setattr(against, "run_child", child)
    assert benchmark.run_case("fwd", 64, 2, 10) == {"times": [2.0, 3.0], "peak_gib": 0.5}
    gen = benchmark.run_case("gen_b16", 64, 2, 10)
    assert gen == {"times": [1.0, 2.0], "samples_per_s": [160.0, 80.0], "peak_gib": 0.5, "setup_s": 1.0}
    assert asked[0] == ("ours", "fwd_cached", 64, 2, 10, None, "auto", benchmark.PRESET)
    with pytest.raises(ValueError, match="unknown case 'nope'; choose one of fwd"):
        benchmark.run_case("nope", 64, 2, 10)


def test_the_summary_takes_medians_and_the_checks_overhead():
    results = {
        "fwd_bwd": {"times": [1.0, 2.0, 9.0]},
        "fwd_bwd_checked": {"times": [1.1, 2.2, 9.0]},
        "gen_b16": {"times": [1.0], "samples_per_s": [10.0, 30.0, 20.0]},
    }
    summary = benchmark.summarize(results, 64, 3, 10)
    assert summary["fwd_bwd_s"] == 2.0 and summary["gen_b16_samples_per_s"] == 20.0
    assert summary["check_overhead_pct"] == pytest.approx(10.0)
    assert benchmark.summarize({"fwd_bwd": {"times": [1.0]}}, 64, 1, 10)["check_overhead_pct"] is None


def test_each_target_gives_one_verdict_with_its_value_and_the_table_ends_with_the_machine():
    rows = benchmark.verdicts({"fwd_s": 1.5, "gen_b1_samples_per_s": 999.0, "fwd_cold_s": None})
    assert [(r.name, r.measured, r.expected, r.passed, r.error) for r in rows] == [
        ("fwd_s", "1.500", "<= 1.7", True, 1.5),
        ("gen_b1_samples_per_s", "999", ">= 1000", False, 999.0),  # 100 and above without decimals
    ]
    assert benchmark.verdicts({"fwd_s": 100.0})[0].measured == "100"
    assert benchmark.verdicts({"gen_b1_samples_per_s": 1000})[0].error == 1000.0  # an int figure is a float error
    summary = {"L": 64, "repeats": 3, "machine": {"cores": 2, "torch": "2.13.0"}, "date": "today", "fwd_s": 1.5}
    assert benchmark.table(summary).splitlines()[-1] == "B = 1, L = 64, medians of 3; 2 cores, torch 2.13.0, today"

"""The mutation engine's coverage run (`coverage_run.collect`) around its two child processes, each
replaced by a recorder with a known answer: what it runs and where, when the gate runs under
coverage, what it reads back, and the one error line when either child cannot run."""

import subprocess
import sys

import pytest

from sashimi.harness import coverage_run


def fake_children(monkeypatch, codes: list[int]):
    """`_run` answering each call with the next exit status (and recording the call); `_read`
    recording which data file it reads and answering with a table naming it."""
    calls, reads = [], []

    def run(cmd, tree, env, deadline):
        calls.append((cmd, tree, env["COVERAGE_FILE"]))
        return subprocess.CompletedProcess(cmd, codes[len(calls) - 1], stdout="", stderr=f"stderr of call {len(calls)}")

    def read(data, tree, context):
        reads.append(data.name)
        return {data.name: {1: {"t"}}}

    monkeypatch.setattr(coverage_run, "_run", run)
    monkeypatch.setattr(coverage_run, "_read", read)
    monkeypatch.setattr(coverage_run.Path, "exists", lambda self: True)
    return calls, reads


def collect(tmp_path, with_gate: bool):
    return coverage_run.collect(tmp_path, ["tests/test_a.py"], None, "2", {}, lambda m: None, with_gate=with_gate)


def test_without_the_gate_only_the_tests_run_under_coverage(monkeypatch, tmp_path):
    calls, reads = fake_children(monkeypatch, [0])
    coverage = collect(tmp_path, with_gate=False)
    assert len(calls) == 1 and calls[0][2].endswith("tests.coverage") and calls[0][1] == tmp_path
    assert "--cov-context=test" in calls[0][0] and calls[0][0][-1] == "tests/test_a.py"
    assert reads == ["tests.coverage"] and coverage.lines == {"tests.coverage": {1: {"t"}}} and coverage.gate == {}


def test_with_the_gate_it_runs_once_more_under_coverage_and_is_read_apart(monkeypatch, tmp_path):
    calls, reads = fake_children(monkeypatch, [0, 0])
    coverage = collect(tmp_path, with_gate=True)
    gate_cmd, tree, data = calls[1]
    assert gate_cmd[:3] == [sys.executable, "-m", "sashimi.harness.coverage_run"] and gate_cmd[3].endswith("coveragerc")
    assert tree == tmp_path and data.endswith("gate.coverage")
    assert reads == ["tests.coverage", "gate.coverage"] and coverage.gate == {"gate.coverage": {1: {"t"}}}


def test_a_gate_that_cannot_run_is_one_error_naming_its_output(monkeypatch, tmp_path):
    fake_children(monkeypatch, [0, 1])
    with pytest.raises(RuntimeError, match="the gate could not run under coverage:\nstderr of call 2"):
        collect(tmp_path, with_gate=True)


@pytest.mark.parametrize("code", [2, 3, 4])
def test_pytest_that_cannot_run_is_one_error_naming_its_exit_status(monkeypatch, tmp_path, code):
    """Exit 0, 1 (failures: broken tests) and 5 (no tests) are results; 2-4 (interrupted, internal
    error, usage) mean the coverage is not there."""
    fake_children(monkeypatch, [code])
    with pytest.raises(RuntimeError, match=f"pytest could not run the tests \\(exit {code}\\)"):
        collect(tmp_path, with_gate=False)
    for fine in (0, 1, 5):
        fake_children(monkeypatch, [fine])
        collect(tmp_path, with_gate=False)

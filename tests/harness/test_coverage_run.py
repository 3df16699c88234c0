"""The mutation engine's coverage run (`coverage_run.collect`) around its two child processes, each
replaced by a recorder with a known answer: what it runs and where, when the gate runs under
coverage, what it reads back, and the one error line when either child cannot run."""

import os
import subprocess
import sys
import time

import pytest

from sashimi.harness import coverage_run, selection


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


def collect(tmp_path, with_gate: bool | None):
    gate = {} if with_gate is None else {"with_gate": with_gate}  # None: the default, no gate
    return coverage_run.collect(tmp_path, ["tests/test_a.py"], None, "2", {}, lambda m: None, **gate)


def test_without_the_gate_only_the_tests_run_under_coverage(monkeypatch, tmp_path):
    calls, reads = fake_children(monkeypatch, [0])
    coverage = collect(tmp_path, with_gate=None)
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


def test_the_code_digest_ignores_python_comments_only(tmp_path):
    """Python without its comments (a `# mutate: skip` mark keeps the cached coverage), other files
    whole, and a Python file that does not tokenize digested as it is."""

    def digest(**files):
        for name, text in files.items():
            (tmp_path / name).write_text(text)
        return coverage_run.code_digest(tmp_path, sorted(files))

    plain = digest(**{"a.py": "x = 1\n"})
    assert digest(**{"a.py": "x = 1  # mutate: skip why\n"}) == plain
    assert digest(**{"a.py": "x = 2\n"}) != plain
    cpp = digest(**{"a.py": "x = 1\n", "b.cpp": "int x;\n"})
    assert digest(**{"a.py": "x = 1\n", "b.cpp": "int x;  // mutate: skip why\n"}) != cpp
    broken = digest(**{"a.py": 'x = """never closed\n'})
    assert broken != plain and digest(**{"a.py": 'x = """never closed, otherwise\n'}) != broken


def test_a_budget_already_spent_starts_no_child(monkeypatch, tmp_path):
    monkeypatch.setattr(coverage_run, "child", lambda *a: pytest.fail("a child started past the budget"))
    with pytest.raises(coverage_run.Spent, match="the budget ended before coverage could start"):
        coverage_run._run(["true"], tmp_path, {}, time.monotonic() - 1)


def test_the_cache_gives_back_what_was_measured_while_the_code_and_the_request_hold(monkeypatch, tmp_path):
    """The second request for the same code and tests reads the cache (no second collection) and gets
    equal coverage; with_gate absent is with_gate False; a changed line or another request measures."""
    (tmp_path / "a.py").write_text("x = 1\n")
    measured = []

    def collect(tree, tests, include, **kw):
        measured.append((tests, kw.get("with_gate", False)))
        return selection.Coverage({"t::a": 0.5}, {"a.py": {1: {"t::a"}}}, {}, {"t::b": "fails"}, tests or [])

    monkeypatch.setattr(coverage_run, "collect", collect)
    cache, log = tmp_path / "made" / "cache", lambda m: None  # folders made as needed
    first = coverage_run.cached(cache, tmp_path, ["a.py"], ["tests/t.py"], None, log=log)
    again = coverage_run.cached(cache, tmp_path, ["a.py"], ["tests/t.py"], None, log=log, with_gate=False)
    assert measured == [(["tests/t.py"], False)]
    assert (again.tests, again.lines, again.gate, again.broken, again.files) == (
        first.tests,
        first.lines,
        first.gate,
        first.broken,
        first.files,
    )
    coverage_run.cached(cache, tmp_path, ["a.py"], ["tests/t.py"], None, log=log, with_gate=True)
    (tmp_path / "a.py").write_text("x = 2\n")
    coverage_run.cached(cache, tmp_path, ["a.py"], ["tests/t.py"], None, log=log)
    assert measured == [(["tests/t.py"], False), (["tests/t.py"], True), (["tests/t.py"], False)]


def test_startup_is_the_time_to_collect_the_first_test_file_and_nothing_without_tests(monkeypatch, tmp_path):
    """pytest collecting one test file (the first by name) in the tree, its output captured, timed on
    the clock; no tests measured: 0 seconds and no child."""
    ran, clock = [], iter([10.0, 12.5])
    monkeypatch.setattr(coverage_run.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(coverage_run.subprocess, "run", lambda cmd, **kw: ran.append((cmd, kw)))
    assert coverage_run.startup_seconds(tmp_path, {"E": "1"}, selection.Coverage()) == 0.0 and ran == []
    tests = {"tests/test_b.py::t": 1.0, "tests/test_a.py::u": 2.0}
    assert coverage_run.startup_seconds(tmp_path, {"E": "1"}, selection.Coverage(tests)) == 2.5
    ((cmd, kw),) = ran
    assert cmd[-1] == "tests/test_a.py" and "--co" in cmd and cmd[cmd.index("-n") + 1] == "0"
    assert kw == {"cwd": tmp_path, "env": {"E": "1"}, "capture_output": True}


GATE_CHILD = """
import sys
sys.path.insert(0, sys.argv[2])
import probe
from sashimi.harness import coverage_run, gate
gate.FAMILIES = {"alpha": None, "beta": None}
gate.run = lambda only=None: [getattr(probe, f)() for f in (only or ["alpha", "beta"])]
coverage_run.gate_under_coverage(sys.argv[1])
"""


def test_the_gate_under_coverage_runs_each_family_in_its_own_context(tmp_path):
    """In a child (as the engine runs it), the gate's families replaced by two that each run one
    function of a probe module: the data holds only what the config includes, each function's line
    under its family's context alone."""
    import coverage

    (tmp_path / "probe.py").write_text("def alpha():\n    return 1\n\n\ndef beta():\n    return 2\n")
    rc = tmp_path / "rc"
    rc.write_text(f"[run]\nbranch = True\ninclude =\n    {tmp_path / 'probe.py'}\n")  # branch: read from rc only
    env = {**os.environ, "COVERAGE_FILE": str(tmp_path / "gate.coverage")}
    done = subprocess.run(
        [sys.executable, "-c", GATE_CHILD, str(rc), str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = coverage.CoverageData(str(tmp_path / "gate.coverage"))
    data.read()
    (probe,) = data.measured_files()
    assert probe.endswith("probe.py") and data.has_arcs()
    contexts = data.contexts_by_lineno(probe)
    assert set(contexts[2]) == {"alpha"} and set(contexts[6]) == {"beta"}

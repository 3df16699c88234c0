"""Which tests judge a mutant, and what a pytest run in its copy says: the choices where coverage
has no answer, a dead process's test, and the reasons given for a timeout or an unrun mutant."""

import sys
import time

from sashimi.harness.mutation import Job, Outcome, classify, run_gate, run_tests, selected_tests
from sashimi.harness.selection import EVERYTHING, Coverage


def job(**fields) -> Job:
    return Job("m", "sashimi/a.py", 3, range(3, 4), "op", "", **fields)


def test_a_mutant_where_nothing_was_measured_runs_no_test():
    assert selected_tests(job(), Coverage()) == ([], "none: no test imports this code")


def test_lines_no_test_executes_are_judged_by_every_measured_test_fastest_first():
    coverage = Coverage(tests={"t.py::b": 0.5, "t.py::a": 0.5, "t.py::c": 0.1})
    tests, how = selected_tests(job(), coverage)
    assert tests == ["t.py::c", "t.py::a", "t.py::b"]  # by time, then by name
    assert how.startswith("every measured test")


def test_a_cpp_mutant_whose_python_caller_no_test_calls_runs_no_test():
    # the caller's lines run at import time only: importing is not calling the C++
    coverage = Coverage(tests={"t.py::a": 0.1}, lines={"sashimi/a.py": {5: {EVERYTHING}}})
    tests, how = selected_tests(job(probe=("sashimi/a.py", range(5, 6))), coverage)
    assert tests == [] and how.startswith("the tests executing sashimi/a.py")


def test_a_dead_test_process_names_the_test_it_was_running():
    failed = classify(-9, "FAILED tests/a.py::t - boom\n")
    assert failed == Outcome("error", "tests/a.py::t", "the test process died (signal 9)")
    assert classify(-11, "ERROR tests/b.py::u - x\n").test == "tests/b.py::u"


def test_a_timeout_and_an_unrun_mutant_say_why(tmp_path):
    cmd = [sys.executable, "-c", "import time; time.sleep(10)"]
    assert run_tests(cmd, tmp_path, {}, limit=1) == Outcome("timeout", detail="its tests ran past 1 s")
    late = run_tests(cmd, tmp_path, {}, limit=60, deadline=time.monotonic() - 1)
    assert late == Outcome("not run", detail="the budget ended before its tests")


GATE = r"""import json, sys, time
from pathlib import Path
Path("argv.json").write_text(json.dumps(sys.argv[1:]))
mode = Path("mode").read_text()
if mode == "sleep":
    time.sleep(30)
print("check specs ...")
print({"pass": "", "row": "FAILED: row x: measured 2 > 1", "error": "error: no fixtures",
       "raise": "ValueError: bad", "quiet": "", "both": "error: then\nFAILED: row y: measured 3"}[mode],
      file=sys.stderr)
sys.exit(0 if mode == "pass" else 3)
"""


def test_the_gate_runs_the_families_asked_and_reports_its_first_failure(tmp_path):
    (tmp_path / "sashimi").mkdir()
    (tmp_path / "sashimi" / "__init__.py").write_text("")
    (tmp_path / "sashimi" / "check.py").write_text(GATE)  # sashimi.check as the mutated copy holds it
    env = {"PYTHONPATH": str(tmp_path)}

    def gate(mode, families=("specs", "golden"), fixtures=None, timeout=30):
        (tmp_path / "mode").write_text(mode)
        return run_gate(tmp_path, env, list(families), fixtures, timeout)

    assert gate("pass", fixtures=tmp_path / "f") == "passed"
    assert (tmp_path / "argv.json").read_text() == (
        f'["--exitfirst", "--only=specs", "--only=golden", "--fixtures", "{tmp_path / "f"}"]'
    )
    assert gate("pass", ["identity"]) == "passed"
    assert (tmp_path / "argv.json").read_text() == '["--exitfirst", "--only=identity"]'
    assert gate("row") == "row x"
    assert gate("error") == "error: no fixtures"
    assert gate("raise") == "ValueError: bad"
    assert gate("quiet") == "exit 3"
    assert gate("both") == "row y"  # a failing row before any error line
    assert gate("sleep", timeout=1) == "timeout after 1 s"


def test_the_gate_is_not_reached_where_no_family_executes_the_lines(tmp_path):
    # no family: nothing runs (the tree holds no checkout: a started gate would fail)
    assert run_gate(tmp_path, {}, [], None, 10) == "not reached"

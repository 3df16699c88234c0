"""One mutant's run in its own copy of a small template: an equivalent mutant runs nothing, a
Python mutant meets its tests, a C++ mutant is built first (into the run's cache, or its copy's)
and judged by its tests only if it builds; links in the template stay links."""

import os
import time

import pytest

from sashimi.harness import mutation
from sashimi.harness.mutation import Job
from sashimi.harness.runner import Settings, liveness, run_all, run_job
from sashimi.harness.selection import Coverage

NATIVE = """import os
import time
from pathlib import Path


def compiler():
    return "c++"


def build(cxx):
    Path(os.environ["BUILD_RECORD"]).write_text(os.environ["SASHIMI_CACHE"])
    source = (Path(__file__).parents[2] / "pkg" / "step.cpp").read_text()
    if "slow" in source:
        time.sleep(30)
    if "broken" in source:
        raise RuntimeError("step.cpp:1:1: error: broken")
    return "lib.so"
"""
CHECK = "import sys\nprint('FAILED: row r: measured 1', file=sys.stderr)\nsys.exit(1)\n"  # the gate, failing
TESTS = """import os
from pathlib import Path


def test_second_stage():
    Path(os.environ["BUILD_RECORD"]).with_name("second").write_text("ran")
    from pkg import m

    assert m.f() != 3


def test_value():
    from pkg import m

    assert m.f() == 1


def test_link_and_source():
    assert os.path.islink("link") and Path("pkg/step.cpp").read_text() != "fails"
"""


@pytest.fixture
def template(tmp_path, monkeypatch):
    files = {
        "pkg/__init__.py": "",
        "pkg/m.py": "def f():\n    return 1\n",
        "pkg/step.cpp": "int f() { return 1; }\n",
        "sashimi/__init__.py": "",
        "sashimi/model/__init__.py": "",
        "sashimi/model/native.py": NATIVE,
        "sashimi/check.py": CHECK,
        "tests/test_t.py": TESTS,
        "tests/test_fast.py": "".join(f"def test_{i:02}():\n    pass\n\n\n" for i in range(20)),
    }
    root = tmp_path / "template"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    os.symlink("pkg/m.py", root / "link")
    monkeypatch.setenv("BUILD_RECORD", str(tmp_path / "record"))
    return root


VALUE, LINK, SECOND = (
    "tests/test_t.py::test_value",
    "tests/test_t.py::test_link_and_source",
    "tests/test_t.py::test_second_stage",
)
COVERAGE = Coverage(
    tests={VALUE: 0.1, LINK: 0.1, SECOND: 0.2},
    lines={"pkg/m.py": {2: {VALUE, SECOND}}, "pkg/step.cpp": {1: {LINK}}},
    gate={"pkg/m.py": {2: {"identity"}}},
)


def job(file, text, job_id="j", **fields):
    return Job(job_id, file, 1 + file.endswith(".py"), range(1 + file.endswith(".py"), 3), "op", text, **fields)


def test_an_equivalent_mutant_runs_no_test(template):
    result = run_job(job("pkg/m.py", "def f():\n    return 2\n", equivalent=True), COVERAGE, Settings(template))
    assert (result["status"], result["detail"]) == ("equivalent", "the same bytecode as the original")


def test_a_python_mutant_meets_the_tests_of_its_lines_and_the_gate_apart(template, tmp_path):
    result = run_job(job("pkg/m.py", "def f():\n    return 2\n"), COVERAGE, Settings(template, with_gate=True))
    assert (result["status"], result["killed"], result["killed_by"]) == ("killed", True, VALUE)
    assert (result["gate"], result["gate_families"]) == ("row r", ["identity"])
    assert 0 <= result["seconds"] < 60


FAST = [f"tests/test_fast.py::test_{i:02}" for i in range(20)]


def test_a_later_stage_runs_only_when_the_first_passes(template, tmp_path):
    # the first stage is the 20 fastest tests of the mutant's lines, the second the rest
    tests = {t: 0.01 for t in FAST} | {VALUE: 0.001, SECOND: 0.2}
    stop = Coverage(tests=tests, lines={"pkg/m.py": {2: {VALUE, *FAST[:19], SECOND}}})
    assert run_job(job("pkg/m.py", "def f():\n    return 2\n"), stop, Settings(template))["killed_by"] == VALUE
    assert not (tmp_path / "second").exists()  # killed in the first stage: the second never ran
    go_on = Coverage(tests=tests, lines={"pkg/m.py": {2: {*FAST, SECOND}}})
    assert run_job(job("pkg/m.py", "def f():\n    return 3\n"), go_on, Settings(template))["killed_by"] == SECOND
    assert (tmp_path / "second").read_text() == "ran"


def test_a_cpp_mutant_is_built_into_the_runs_cache_and_then_tested(template, tmp_path):
    settings = Settings(template, native_cache=tmp_path / "cache")
    result = run_job(job("pkg/step.cpp", "int f() { return 2; }\n"), COVERAGE, settings)
    assert result["status"] == "survived" and result["tests_run"] == 1  # the link is still a link
    assert (tmp_path / "record").read_text() == str(tmp_path / "cache")
    failing = run_job(job("pkg/step.cpp", "fails"), COVERAGE, Settings(template), time.monotonic() + 120)
    assert failing["status"] == "killed"
    assert (tmp_path / "record").read_text().endswith(os.path.join("tree", ".native-cache"))  # the copy's own


def test_a_cpp_mutant_that_does_not_build_is_invalid_and_runs_no_test(template):
    result = run_job(job("pkg/step.cpp", "broken"), COVERAGE, Settings(template))
    assert result["status"] == "invalid" and not result["killed"]
    assert result["detail"] == "it does not compile: RuntimeError: step.cpp:1:1: error: broken"


def test_a_cpp_build_the_budget_cuts_short_is_not_run(template):
    result = run_job(job("pkg/step.cpp", "slow"), COVERAGE, Settings(template), time.monotonic() + 1)
    assert (result["status"], result["detail"]) == ("not run", "the budget ended while it was built")


def test_every_job_is_run_in_order_and_none_starts_after_the_deadline(template):
    jobs = [job("pkg/m.py", "x = 1\n", f"j{i}", equivalent=True) for i in range(3)]
    results, unrun = run_all(jobs, COVERAGE, Settings(template), 2, None, lambda line: None)
    assert [r["id"] for r in results] == ["j0", "j1", "j2"] and unrun == []
    results, unrun = run_all(jobs, COVERAGE, Settings(template), 2, time.monotonic() - 1, lambda line: None)
    assert results == [] and unrun == jobs


def test_jobs_start_in_their_order_and_a_stop_returns_what_finished(template):
    jobs = [Job(f"j{i}", "pkg/m.py", i + 1, range(i + 1, i + 2), "op", "x = 1\n", equivalent=True) for i in range(3)]
    lines = []
    run_all(jobs, COVERAGE, Settings(template), 1, None, lines.append)
    assert [line.split()[1].split(":")[1] for line in lines] == ["1", "2", "3"]  # one at a time, in order

    def stop(line):
        raise KeyboardInterrupt  # Ctrl-C while the first result is logged

    try:
        results, unrun = run_all(jobs, COVERAGE, Settings(template), 1, None, stop)
        assert [r["id"] for r in results] == ["j0"] and [j.id for j in unrun] == ["j1", "j2"]
        assert mutation.STOPPING.is_set()  # the children were ended, and none starts now
    finally:
        mutation.STOPPING.clear()


def test_the_forced_failure_probes_a_mutant_with_tests_and_says_when_the_copy_is_not_what_runs(template):
    # the first Python mutant's one test is broken (never run): the probe takes the next one
    coverage = Coverage(COVERAGE.tests, {"pkg/__init__.py": {1: {LINK}}, "pkg/m.py": {2: {VALUE}}}, broken={LINK: "x"})
    untested = Job("u", "pkg/__init__.py", 1, range(1, 2), "op", "y = 2\n")
    harmless = job("pkg/m.py", "def f():\n    return 1\n")  # the forced failure alone must fail its test
    assert liveness([untested, harmless], coverage, Settings(template)) is None
    # lines no measured test executes are judged by every measured test, which need not import them
    unreached = Job("r", "pkg/unreached.py", 1, range(1, 2), "op", "z = 3\n")
    assert liveness([unreached, harmless], coverage, Settings(template)) is None
    assert liveness([job("pkg/step.cpp", "int f();\n")], COVERAGE, Settings(template)) is None  # no Python mutant
    blind = Coverage(tests={LINK: 0.1}, lines={"pkg/m.py": {2: {LINK}}})  # a test that never imports pkg.m
    said = liveness([job("pkg/m.py", "x = 1\n")], blind, Settings(template))
    assert said.startswith("pkg/m.py made to raise on import passed its 1 selected tests")

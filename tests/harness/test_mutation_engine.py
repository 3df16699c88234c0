"""The mutation engine's verdicts, each with a known answer on a tiny throw-away project (a git
repository built in the test), never on the real tree: how a diff maps to lines, which tests a
mutant selects, how stages combine into one verdict, what counts as a kill, the time limits,
and the exit status."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from sashimi import mutate as mutate_cmd
from sashimi.harness import coverage_run, markdown, mutation, plan, report, runner, selection
from sashimi.harness.mutation import Job, Outcome, classify, judge, make_template, run_tests, selected_tests, stages
from sashimi.harness.runner import Settings, liveness, run_job, stage_limit

GEOMETRY = textwrap.dedent("""\
    SCALE = 2


    def area(w, h):
        return w * h


    def perimeter(w, h):
        return SCALE * (w + h)


    def child_only(x):
        return x + 1
    """)
TESTS = {
    "tests/test_geometry.py": """\
        from sashimi.geometry import area, perimeter


        def test_area():
            assert area(2, 3) == 6


        def test_perimeter_is_positive():
            assert perimeter(1, 1) > 0
        """,
    "tests/test_broken.py": """\
        from sashimi.geometry import area


        def test_fails_before_any_mutant():
            assert area(1, 1) == 2
        """,
    "tests/test_git.py": """\
        import subprocess


        def test_the_tree_is_a_git_work_tree():
            listed = subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True).stdout
            assert "sashimi/geometry.py" in listed.split()
        """,
    "tests/test_child.py": """\
        import subprocess
        import sys


        def test_in_a_child_process():
            code = "from sashimi.geometry import child_only; assert child_only(1) == 2"
            subprocess.run([sys.executable, "-c", code], check=True)
        """,
}


def git(tree, *args):
    who = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", *args], cwd=tree, check=True, capture_output=True, env={**os.environ, **who})


def write(tree, files: dict[str, str]) -> None:
    for name, text in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(textwrap.dedent(text))


def make_project(path):
    """sashimi/geometry.py with a pinning test, a weak test, a broken test, a test that needs git and
    one that runs the code in a child process; committed."""
    write(path, {"sashimi/__init__.py": "", "sashimi/geometry.py": GEOMETRY, "tests/__init__.py": "", **TESTS})
    git(path, "init", "-q")
    git(path, "add", ".")
    git(path, "commit", "-qm", "one")
    return path


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """The project's template copy and its coverage, measured for real (once: the tests only read them)."""
    template = tmp_path_factory.mktemp("template") / "t"
    make_template(template, make_project(tmp_path_factory.mktemp("project")))
    env = {**os.environ, "PYTHONPATH": str(template), "PYTHONDONTWRITEBYTECODE": "1"}
    coverage = coverage_run.collect(template, None, None, "0", env, lambda m: None, sources=("sashimi",))
    return template, coverage


def mutant(text: str, old: str, new: str, line: int, **fields) -> Job:
    assert old in text
    return Job(f"m{line}", "sashimi/geometry.py", line, range(line, line + 1), "op", text.replace(old, new), **fields)


def test_changed_lines_map_each_hunk_to_its_first_and_last_line(tmp_path):
    write(tmp_path, {"sashimi/m.py": "a = 1\nb = 2\nc = 3\nd = 4\ne = 5\n", "sashimi/old.py": "x = 1\ny = 2\n"})
    write(tmp_path, {"sashimi/gone.py": "z = 1\n", "sashimi/s.cpp": "int a = 1;\n", "tests/test_m.py": "t = 1\n"})
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "one")
    write(tmp_path, {"sashimi/m.py": "A = 1\nb = 2\nb2 = 2\nb3 = 2\nc = 3\nd = 4\n", "tests/test_m.py": "t = 2\n"})
    write(tmp_path, {"sashimi/s.cpp": "int a = 2;\n"})
    git(tmp_path, "mv", "sashimi/old.py", "sashimi/new.py")
    (tmp_path / "sashimi/new.py").write_text("x = 1\ny = 3\n")
    git(tmp_path, "rm", "-q", "sashimi/gone.py")
    # line 1 changed; 3-4 added (a hunk's first and last line); `e = 5` deleted: no line; the
    # renamed file's change under its new name; the deleted file and the tests are not mutated
    assert plan.changed_lines(tmp_path, "HEAD") == {
        "sashimi/m.py": {1, 3, 4},
        "sashimi/new.py": {2},
        "sashimi/s.cpp": {1},
    }
    with pytest.raises(ValueError, match="no-such-rev"):
        plan.changed_lines(tmp_path, "no-such-rev")


def test_one_mutant_a_line_library_first_and_skip_marks(tmp_path):
    write(tmp_path, {"sashimi/harness/h.py": "k = 1\n", "sashimi/m.py": "def f(x):\n    return x.sum(dim=-1)\n"})
    write(tmp_path, {"sashimi/s.cpp": "// c\nint a = 1;\n"})
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "one")
    source = "def f(x):\n    y = x * 2  # mutate: skip the factor cancels below\n    return y / 2 + x - 1\n"
    write(tmp_path, {"sashimi/harness/h.py": "k = 2\n", "sashimi/m.py": source, "sashimi/s.cpp": "// c\nint a = 2;\n"})
    jobs, skips = plan.diff_jobs(tmp_path, "HEAD")
    assert [(j.file, j.line, j.operator, j.change) for j in jobs] == [
        ("sashimi/m.py", 3, "arithmetic: - -> +", "y / 2 + x - 1 -> y / 2 + x + 1"),  # outermost first
        ("sashimi/s.cpp", 2, "constant: 2 -> 3", "int a = 2; -> int a = 3;"),
        ("sashimi/harness/h.py", 1, "constant: 2 -> 3", "2 -> 3"),  # the harness after the library
    ]
    assert jobs[1].text == "// c\nint a = 3;\n"
    assert jobs[0].column == 12 and [(s.line, s.reason) for s in skips] == [(2, "the factor cancels below")]
    assert [j.operator for j in plan.diff_jobs(tmp_path, "HEAD", per_line=2)[0]][:2] == [
        "arithmetic: - -> +",
        "arithmetic: + -> -",
    ]


def test_a_default_value_or_a_decorator_is_judged_by_the_tests_running_the_functions_body(tmp_path):
    """Defaults and decorators run at import time, which would select every test; their change
    shows when the function runs, so the lines that judge them are the body's."""
    write(tmp_path, {"sashimi/m.py": "def f(x, k=1):\n    return x * k\n"})
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "one")
    source = "import functools\n\n\n@functools.cache\ndef f(x, *, k=2):\n    y = x * k\n    return y\n\n\nZ = f(1)\n"
    write(tmp_path, {"sashimi/m.py": source})
    jobs = {j.line: j for j in plan.diff_jobs(tmp_path, "HEAD")[0]}
    assert jobs[4].operator.startswith("decorator") and jobs[5].change == "2 -> 3"
    assert jobs[4].lines == jobs[5].lines == range(6, 8) and jobs[10].lines == range(10, 11)
    coverage = selection.Coverage(
        {"t::calls_f": 1.0, "t::other": 1.0}, {"sashimi/m.py": {5: {"*"}, 6: {"t::calls_f"}, 10: {"*"}}}
    )
    assert selected_tests(jobs[5], coverage)[0] == ["t::calls_f"]
    assert selected_tests(jobs[10], coverage)[0] == ["t::calls_f", "t::other"]  # module level: every test


def test_coverage_is_the_baseline_and_finds_import_time_and_child_lines(measured):
    template, coverage = measured
    assert set(coverage.broken) == {"tests/test_broken.py::test_fails_before_any_mutant"}
    assert coverage.lines["sashimi/geometry.py"][5] == {
        "tests/test_geometry.py::test_area",
        "tests/test_broken.py::test_fails_before_any_mutant",
    }
    import_time = Job("i", "sashimi/geometry.py", 1, range(1, 2), "op", "")
    tests, how = selected_tests(import_time, coverage)  # `SCALE = 2` runs at import: every measured test
    assert set(tests) == set(coverage.tests) - set(coverage.broken) and how.startswith("every measured test")
    child = Job("c", "sashimi/geometry.py", 13, range(13, 14), "op", "")  # run only in a child process
    assert coverage.tests_for("sashimi/geometry.py", range(13, 14)) is None
    assert set(selected_tests(child, coverage)[0]) == set(tests)
    area = Job("a", "sashimi/geometry.py", 5, range(5, 6), "op", "")
    assert selected_tests(area, coverage)[0] == ["tests/test_geometry.py::test_area"]  # the broken test is left out


@pytest.mark.nightly  # whole mutant runs (copies, pytest in them); their parts are tested one by one here
def test_verdicts_on_real_mutants(measured):
    template, coverage = measured
    settings = Settings(template, startup=1.0)
    times = mutant(GEOMETRY, "w * h", "w + h", 5)
    killed = run_job(times, coverage, settings)
    assert killed["status"] == "killed" and killed["killed_by"] == "tests/test_geometry.py::test_area"
    weak = mutant(GEOMETRY, "SCALE * (w + h)", "(SCALE + 1) * (w + h)", 9)
    result = run_job(weak, coverage, settings)
    assert result["status"] == "survived" and not result["killed"]
    # the broken test alone executes line 5 in this table: it runs nowhere, so no kill
    only_broken = selection.Coverage(
        coverage.tests, {"sashimi/geometry.py": {5: set(coverage.broken)}}, {}, coverage.broken
    )
    assert run_job(times, only_broken, settings)["status"] == "survived"
    # the copy is a git work tree: the test that lists tracked files passes there
    git_only = selection.Coverage(
        coverage.tests, {"sashimi/geometry.py": {9: {"tests/test_git.py::test_the_tree_is_a_git_work_tree"}}}
    )
    assert run_job(weak, git_only, settings)["status"] == "survived"
    crash = mutant(GEOMETRY, "SCALE = 2", "SCALE = 1 / 0", 1)
    errored = run_job(crash, coverage, settings)
    assert errored["status"] == "error" and "collection error" in errored["detail"] and errored["killed"]
    loop = mutant(GEOMETRY, "return w * h", "while True:\n            pass", 5)
    looped = run_job(loop, coverage, Settings(template, timeout=3, startup=0.0))
    assert looped["status"] == "timeout"
    late = run_job(times, coverage, settings, deadline=time.monotonic() - 1)
    assert late["status"] == "not run" and not late["killed"]


def test_the_gate_runs_the_families_that_execute_the_mutants_lines(measured, monkeypatch):
    """With the gate (the catalogue's default), a caught mutant's copy runs the gate's families that
    execute its lines, in FAMILIES' order; a line run at import time runs every family."""
    template, coverage = measured
    gate = {"sashimi/geometry.py": {5: {"published", "kernel"}, 1: {selection.EVERYTHING}}}
    table = selection.Coverage(coverage.tests, coverage.lines, gate, coverage.broken, coverage.files)
    calls = []
    monkeypatch.setattr(runner, "run_gate", lambda tree, env, families, *rest: calls.append(families) or "pass")
    monkeypatch.setattr(runner, "FAMILIES", ["kernel", "layer", "published"])
    times = mutant(GEOMETRY, "w * h", "w + h", 5)
    result = run_job(times, table, Settings(template, with_gate=True, startup=1.0))
    assert (
        result["status"] == "killed" and result["gate"] == "pass" and result["gate_families"] == ["kernel", "published"]
    )
    assert table.families_for("sashimi/geometry.py", range(1, 2), ["a", "b"]) == ["a", "b"]
    assert table.families_for("sashimi/geometry.py", range(2, 5), ["kernel"]) == [] and calls == [
        ["kernel", "published"]
    ]


@pytest.mark.nightly  # whole mutant runs (copies, pytest in them); their parts are tested one by one here
def test_a_forced_failure_proves_the_tests_see_the_copy(measured):
    template, coverage = measured
    settings = Settings(template, startup=1.0)
    times = mutant(GEOMETRY, "w * h", "w + h", 5)
    assert liveness([times], coverage, settings) is None
    # a table that sends the mutant to a test that never imports the module: its verdicts would all be survivors
    blind = selection.Coverage(
        coverage.tests, {"sashimi/geometry.py": {5: {"tests/test_git.py::test_the_tree_is_a_git_work_tree"}}}
    )
    assert "made to raise on import passed its 1 selected tests" in liveness([times], blind, settings)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a killed orphan waits for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def test_a_child_ends_with_everything_it_started(tmp_path):
    """A mutant's pytest runs in a process group of its own: a timeout ends it and what it started
    (xdist workers, a test's torchrun), and so does stop_children (SIGTERM or Ctrl-C), which also
    refuses new children."""
    script = ["sh", "-c", "sleep 60 & echo $! > grandchild; wait"]
    with pytest.raises(subprocess.TimeoutExpired):
        mutation.child(script, tmp_path, timeout=1)
    assert gone(int((tmp_path / "grandchild").read_text()))
    (tmp_path / "grandchild").unlink()
    finished = {}
    thread = threading.Thread(target=lambda: finished.update(done=mutation.child(script, tmp_path)))
    thread.start()
    while not (tmp_path / "grandchild").exists() or not (tmp_path / "grandchild").read_text().strip():
        time.sleep(0.05)
    try:
        mutation.stop_children()
        thread.join(10)
        assert finished["done"].returncode == -9 and gone(int((tmp_path / "grandchild").read_text()))
        with pytest.raises(mutation.Stopped):
            mutation.child(["true"], tmp_path)
    finally:
        mutation.STOPPING.clear()
    done = mutation.child(["sh", "-c", "echo out; echo err >&2; exit 3"], tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_a_stage_that_passes_hands_on_to_the_next():
    tests = [f"tests/t.py::t{i}" for i in range(25)]
    assert stages(tests, "") == [tests[:20], tests[20:]]  # the 20 fastest in a process of their own
    named = ["tests/k.py::a", "tests/k.py::b"]
    assert stages([tests[0], *named], "tests/k.py") == [named, [tests[0]]]
    assert stages([], "") == []
    assert judge([Outcome("survived"), Outcome("killed", "t2")]) == Outcome("killed", "t2")
    assert judge([Outcome("error", "t1"), Outcome("killed", "t2")]).status == "error"
    assert judge([Outcome("survived"), Outcome("survived")]).status == "survived"
    assert judge([]).status == "survived"


def test_pytest_output_is_classified():
    assert classify(0, "") == Outcome("survived") and classify(5, "no tests ran").status == "survived"
    assert classify(1, "FAILED tests/a.py::t - assert 1 == 2\n") == Outcome("killed", "tests/a.py::t", "assert 1 == 2")
    fixture = classify(1, "ERROR tests/a.py::t - RuntimeError: fixture\n")
    assert fixture.status == "error" and fixture.test == "tests/a.py::t" and "fixture" in fixture.detail
    assert classify(2, "ERROR tests/a.py\nE   ImportError: x\n").detail == "a collection error: ImportError: x"
    assert classify(-11, "").detail == "the test process died (signal 11)"


def test_run_tests_stops_at_its_limit_or_the_deadline(tmp_path):
    write(tmp_path, {"tests/test_x.py": "import time\n\n\ndef test_slow():\n    time.sleep(30)\n"})
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_x.py"]
    assert run_tests(cmd, tmp_path, dict(os.environ), limit=1).status == "timeout"
    cut = run_tests(cmd, tmp_path, dict(os.environ), limit=60, deadline=time.monotonic() + 1)
    assert cut == Outcome("not run", detail="the budget ended during its tests")


def test_test_durations_set_each_stage_limit():
    output = "0.50s call     tests/a.py::t\n0.25s setup    tests/a.py::t\n0.10s teardown tests/a.py::u\n"
    assert selection.durations(output) == {"tests/a.py::t": 0.75, "tests/a.py::u": 0.1}
    coverage = selection.Coverage(tests={"tests/a.py::t": 0.75, "tests/a.py::u": 0.1})
    settings = Settings(template=Path("."), startup=2.0, timeout=600)
    assert stage_limit(["tests/a.py::t", "tests/a.py::u"], coverage, settings) == pytest.approx(30 + 10 * 2.85)
    assert stage_limit(["tests/unmeasured.py::v"], coverage, settings) == pytest.approx(30 + 10 * 3.0)
    assert stage_limit(["tests/a.py::t"], coverage, Settings(template=Path("."), startup=2.0, timeout=40)) == 40


def test_summary_exit_status_and_the_markdown_page_count_what_happened():
    def r(status, gate=None):
        return {
            "id": status,
            "file": "f.py",
            "line": 1,
            "operator": "op",
            "status": status,
            "gate": gate,
            "killed": status in ("killed", "error", "timeout"),
            "killed_by": "t" if status == "killed" else None,
        }

    results = [
        r("killed", "passed"),
        r("error", "row x"),
        r("timeout", "timeout after 5 s"),
        r("survived", "not reached"),
    ]
    results += [r("equivalent"), r("not run"), r("invalid")]
    line = report.summary(results, 2, "on the change", {"budget": 5, "broken": 1, "minutes": 1.0})
    assert line.startswith("3 of 5 mutants on the change caught (1 killed, 1 by an error, 1 by a timeout); ")
    assert "2 survived (1 likely equivalent" in line and "3 not run: the budget of 5 min ended" in line
    assert "1 invalid" in line and "1 broken tests" in line
    assert report.exit_status(results, 0, 0, False) == report.SURVIVED
    done = [x for x in results if x["status"] != "survived"]
    assert report.exit_status(done, 0, 0, False) == report.INCOMPLETE
    assert report.exit_status(done, 0, 0, True) == 0 and report.exit_status([r("killed")], 1, 0, False) == 3
    assert report.exit_status([r("killed")], 0, 1, False) == report.SURVIVED  # a stale entry
    assert report.exit_status([r("killed"), r("equivalent")], 0, 0, False) == 0
    assert markdown.gate_catches(results) == 2  # a failing row and a gate timeout; not passed / not reached / none
    assert "2 of 7 make the gate fail alone" in markdown.markdown(results, {}, "cmd", 1.0)
    assert report.survivors_by_file(results) == ["f.py: 1 survived", "  f.py:1 op: SURVIVED; gate: not reached"]


@pytest.mark.slow
@pytest.mark.nightly  # 20 s of whole-command runs; the verdicts and exit codes are tested above, piece by piece
def test_the_command_on_a_change(project):
    """The whole command: a change with a killed and a surviving mutant exits 1; a budget too
    short for any mutant exits 3, or 0 with --allow-partial; nothing is killed by the broken test."""
    write(project, {"sashimi/geometry.py": GEOMETRY.replace("w * h", "h * w").replace("SCALE * (w", "SCALE * (w")})
    text = (project / "sashimi/geometry.py").read_text().replace("return SCALE * (w + h)", "return SCALE * (h + w)")
    (project / "sashimi/geometry.py").write_text(text)
    cmd = [sys.executable, "-m", "sashimi.mutate", "--root", str(project), "--diff", "HEAD", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    out = json.loads(done.stdout)
    verdicts = {m["line"]: (m["status"], m["killed_by"]) for m in out["mutants"]}
    assert verdicts == {5: ("killed", "tests/test_geometry.py::test_area"), 9: ("survived", None)}
    assert list(out["broken"]) == ["tests/test_broken.py::test_fails_before_any_mutant"]
    short = subprocess.run([*cmd, "--budget", "0.01"], capture_output=True, text=True)
    assert short.returncode == 3 and json.loads(short.stdout)["summary"].startswith("0 of 0 mutants")
    assert "2 not run" in json.loads(short.stdout)["summary"]
    assert subprocess.run([*cmd, "--budget", "0.01", "--allow-partial"], capture_output=True).returncode == 0


@pytest.mark.nightly  # a whole command, stopped while a mutant's test sleeps
def test_a_stopped_run_ends_its_tests_reports_and_cleans_up(project, tmp_path):
    """SIGTERM while a mutant's test runs: the test's process ends, the command exits 130 with its
    summary saying it was stopped, and its temporary copies are removed."""
    pid_file, scratch = tmp_path / "pid", tmp_path / "tmp"
    scratch.mkdir()
    sleeper = f"""\
        import os, time
        from sashimi.geometry import volume


        def test_volume():
            if volume(1, 2, 3) != 6:  # only a mutant sleeps
                open({str(pid_file)!r}, "w").write(str(os.getpid()))
                time.sleep(120)
        """
    write(project, {"sashimi/geometry.py": GEOMETRY + "\n\ndef volume(w, h, d):\n    return w * h * d\n"})
    write(project, {"tests/test_volume.py": sleeper})
    cmd = [sys.executable, "-m", "sashimi.mutate", "--root", str(project), "--diff", "HEAD", "--json"]
    run = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(scratch)}
    )
    deadline = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.1)
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 130, err
    assert gone(int(pid_file.read_text()))
    assert "stopped" in json.loads(out)["summary"] and not list(scratch.glob("sashimi-mutate-*"))


def test_the_command_returns_its_exit_status_in_process(project, capsys):
    """main() returns what the command exits with (python -m sashimi.mutate calls sys.exit on it): a
    budget that ends before any mutant is 3, or 0 with --allow-partial; a bad revision is 2."""
    write(project, {"sashimi/geometry.py": GEOMETRY.replace("w * h", "h * w")})
    argv = ["--root", str(project), "--diff", "HEAD", "--budget", "0.001", "--json"]
    assert mutate_cmd.main(argv) == 3
    assert "1 not run" in json.loads(capsys.readouterr().out)["summary"]
    assert mutate_cmd.main([*argv, "--allow-partial"]) == 0
    assert mutate_cmd.main(["--root", str(project), "--diff", "no-such-rev"]) == 2


def test_later_rounds_judge_only_the_survivors_and_keep_what_they_catch(monkeypatch):
    """Round 2 measures and runs only round 1's survivors; a survivor caught there takes the new
    verdict, one still surviving keeps its own; with none left no round is measured; a broken test
    of any round stays broken."""
    jobs = [Job(i, "sashimi/m.py", n, range(n, n + 1), "op", "") for n, i in enumerate("abc", 1)]
    first = [{"id": "a", "status": "killed"}, {"id": "b", "status": "survived"}, {"id": "c", "status": "survived"}]
    measured, ran = [], []
    round2 = selection.Coverage(broken={"t::new": "fails"})

    def measure(args, template, again, files, deadline):
        measured.append(([j.id for j in again], files))
        return round2

    def run_all(again, coverage, settings, parallel, deadline, log):
        ran.append((sorted(j.id for j in again), dict(coverage.broken)))
        return [{"id": "b", "status": "killed"}, {"id": "c", "status": "survived"}], []

    monkeypatch.setattr(mutate_cmd, "measure", measure)
    monkeypatch.setattr(mutate_cmd, "run_all", run_all)
    args = type("Args", (), {"jobs": 2})()
    round1 = selection.Coverage(broken={"t::old": "fails"})
    results = mutate_cmd.later_rounds(
        args, None, jobs, first, [round1, ["tests/test_b.py"], ["tests/test_c.py"]], None, None
    )
    assert [r["status"] for r in results] == ["killed", "killed", "survived"]
    assert measured == [(["b", "c"], ["tests/test_b.py"]), (["c"], ["tests/test_c.py"])]
    assert ran[0] == (["b", "c"], {"t::old": "fails", "t::new": "fails"})
    measured.clear()
    assert mutate_cmd.later_rounds(args, None, jobs, first[:1], [round1, ["tests/test_b.py"]], None, None) == first[:1]
    assert measured == []


def test_a_stop_during_the_run_reports_what_it_has_and_returns_130(project, monkeypatch, capsys):
    """What the SIGTERM handler does (end the children, raise KeyboardInterrupt), here during the
    coverage round: the report still comes out, says why nothing ran, and the status is 130."""
    write(project, {"sashimi/geometry.py": GEOMETRY.replace("w * h", "h * w")})

    def stopped(*args, **kwargs):
        mutation.stop_children()
        raise KeyboardInterrupt

    monkeypatch.setattr(mutate_cmd, "measure", stopped)
    assert mutate_cmd.main(["--root", str(project), "--diff", "HEAD", "--json"]) == 130
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert "1 not run: the run was stopped (SIGTERM or Ctrl-C)" in summary and "budget" not in summary
    assert not mutation.STOPPING.is_set()  # children may start again in this process


def test_rounds_go_from_the_named_killers_to_the_whole_suite(tmp_path):
    write(tmp_path, {"sashimi/__init__.py": "", "sashimi/a.py": "X = 1\n", "sashimi/b.py": "from sashimi import a\n"})
    write(tmp_path, {"tests/helpers.py": "from sashimi import b\n", "tests/test_a.py": "from sashimi import a\n"})
    write(
        tmp_path,
        {
            "tests/test_b.py": "from sashimi import b\n",
            "tests/test_k.py": "",
            "tests/test_h.py": "from tests import helpers\n",
        },
    )
    assert selection.rounds(tmp_path, ["sashimi/a.py"]) == [
        ["tests/test_a.py"],  # imports it (and is its mirror)
        ["tests/test_b.py"],  # through another module of the package
        ["tests/test_h.py", "tests/test_k.py"],  # only through the shared helpers, or not at all
    ]
    assert selection.rounds(tmp_path, ["sashimi/a.py"], ("tests/test_k.py",))[0] == ["tests/test_k.py"]


def test_a_cpp_mutant_is_judged_by_every_line_of_its_python_module(tmp_path):
    write(tmp_path, {"sashimi/model/native.py": "".join(f"x{i} = {i}\n" for i in range(1, 8))})
    caller, lines = plan.probe(tmp_path, "sashimi/model/native_step.cpp")
    assert caller == "sashimi/model/native.py" and set(range(1, 8)) <= set(lines)
    assert plan.probe(tmp_path, "sashimi/other.cpp") is None

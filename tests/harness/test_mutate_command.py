"""`python -m sashimi.mutate`'s own steps between its flags and the engine, each against a known
answer with the engine's parts replaced by recorders: which mode measures coverage in rounds, what
`--list` prints and returns, which jobs each mode plans (and `--lines` keeps), what the coverage run
is asked to include, how later rounds are called and end, and what the first round measures."""

import json
from pathlib import Path

import pytest

from sashimi import mutate
from sashimi.harness import coverage_run, history, plan, selection
from sashimi.harness.catalogue import CATALOGUE
from sashimi.harness.mutation import Job


def job(id: str, file: str, line: int, probe=None) -> Job:
    return Job(id, file, line, range(line, line + 1), "op", "", probe=probe)


def test_the_gate_and_coverage_rounds_follow_the_mode():
    """The catalogue runs the gate unless --no-gate, a change only with --gate; coverage comes in
    rounds for a change, the history or a few entries, and once for the whole catalogue."""
    some = CATALOGUE[0].id
    assert mutate.parse([]).with_gate and not mutate.parse(["--no-gate"]).with_gate
    assert not mutate.parse(["--diff", "HEAD"]).with_gate and mutate.parse(["--diff", "HEAD", "--gate"]).with_gate
    for argv in (["--diff", "HEAD"], ["--replay"], ["--only", some]):
        assert mutate.rounds_apply(mutate.parse(argv)), argv
    assert not mutate.rounds_apply(mutate.parse([]))


def test_list_prints_each_entry_with_its_place_or_why_it_is_stale(monkeypatch, capsys):
    first, second, *rest = CATALOGUE
    jobs = [job(first.id, "sashimi/a.py", 7), *[job(m.id, "sashimi/b.py", 1) for m in rest]]
    monkeypatch.setattr(plan, "catalogue_jobs", lambda root, only=None: (jobs, {}))
    monkeypatch.setattr(mutate, "CATALOGUE", [first, *rest])
    assert mutate.list_catalogue() == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[0].split()[:2] == [first.id, "sashimi/a.py:7"]
    assert f"{len(jobs)} entries anchored, 0 stale" in out.err
    monkeypatch.setattr(mutate, "CATALOGUE", [first, second])
    monkeypatch.setattr(plan, "catalogue_jobs", lambda root, only=None: (jobs[:1], {second.id: "pattern gone"}))
    assert mutate.list_catalogue() == 1
    assert "STALE: pattern gone" in capsys.readouterr().out.splitlines()[1]


def test_a_change_plans_its_lines_and_lines_keeps_only_those(monkeypatch):
    asked = []

    def diff_jobs(root, rev, per_line, under):
        asked.append(under)
        return [job("a", "sashimi/x.py", 3), job("b", "sashimi/x.py", 9)], [
            job("s", "sashimi/x.py", 4),
            job("t", "y", 1),
        ]

    monkeypatch.setattr(plan, "diff_jobs", diff_jobs)
    jobs, skipped, stale = mutate.plan_jobs(mutate.parse(["--diff", "HEAD", "--lines", "sashimi/x.py:9"]))
    assert [j.id for j in jobs] == ["b"] and skipped == [] and stale == {}
    jobs, skipped, _ = mutate.plan_jobs(mutate.parse(["--diff", "HEAD", "--lines", "sashimi/x.py:4"]))
    assert jobs == [] and [s.id for s in skipped] == ["s"]
    assert asked == [("sashimi/x.py",), ("sashimi/x.py",)]  # the files of --lines limit the plan


def test_the_history_and_the_catalogue_plan_their_own_jobs_and_name_the_stale(monkeypatch, capsys):
    replayed, listed = [job("h", "sashimi/x.py", 1)], [job("c", "sashimi/y.py", 2)]
    monkeypatch.setattr(history, "replay_jobs", lambda root: (replayed, {"old-bug": "its code is gone"}))
    monkeypatch.setattr(plan, "catalogue_jobs", lambda root, only=None: (listed, {}))
    assert mutate.plan_jobs(mutate.parse(["--replay"])) == (replayed, [], {"old-bug": "its code is gone"})
    assert "STALE old-bug: its code is gone" in capsys.readouterr().err
    assert mutate.plan_jobs(mutate.parse([])) == (listed, [], {})


def test_coverage_includes_the_mutated_files_and_the_probes_of_cpp_mutants(monkeypatch, tmp_path):
    """A change's coverage is measured over its Python files and, for a C++ mutant, the Python module
    that loads it; the whole catalogue's over every file (include None)."""
    asked = []
    monkeypatch.setattr(coverage_run, "cached", lambda cache, tree, files, tests, include, **kw: asked.append(include))
    monkeypatch.setattr(mutate, "source_files", lambda tree: [])
    jobs = [job("a", "sashimi/x.py", 3), job("b", "sashimi/model/n.cpp", 5, probe=("sashimi/model/n.py", range(1, 9)))]
    mutate.measure(mutate.parse(["--diff", "HEAD"]), tmp_path, jobs, None, None)
    mutate.measure(mutate.parse([]), tmp_path, jobs, None, None)
    assert asked == [["sashimi/model/n.py", "sashimi/x.py"], None]


def test_later_rounds_pass_their_arguments_in_order_and_stop_when_the_budget_ends(monkeypatch):
    """Each later round measures with (args, template, survivors, its files, deadline); a round whose
    coverage the budget cuts short ends the rounds, keeping the verdicts so far."""
    jobs = [job("a", "sashimi/m.py", 1), job("b", "sashimi/m.py", 2)]
    first = [{"id": "a", "status": "survived"}, {"id": "b", "status": "survived"}]
    args, template, calls = mutate.parse(["--diff", "HEAD"]), Path("template"), []

    def measure(*given):
        calls.append(given)
        if len(calls) == 2:
            raise coverage_run.Spent("the budget ended during coverage")
        return selection.Coverage()

    def run_all(again, coverage, settings, parallel, deadline, log):
        return [{"id": "a", "status": "killed"}], []

    monkeypatch.setattr(mutate, "measure", measure)
    monkeypatch.setattr(mutate, "run_all", run_all)
    rounds = [selection.Coverage(), ["tests/test_2.py"], ["tests/test_3.py"], ["tests/test_4.py"]]
    results = mutate.later_rounds(args, template, jobs, first, rounds, None, 99.0)
    assert [r["status"] for r in results] == ["killed", "survived"]
    assert calls[0][:2] == (args, template) and [j.id for j in calls[0][2]] == ["a", "b"]
    assert calls[0][3:] == (["tests/test_2.py"], 99.0) and calls[1][3] == ["tests/test_3.py"] and len(calls) == 2


def test_the_first_round_measures_the_first_test_files_over_the_changed_files_and_probes(monkeypatch, tmp_path):
    """`run` asks for the rounds over every mutated file and each C++ mutant's Python module, then
    measures the first round's test files (here the budget ends there: every mutant not run)."""
    (tmp_path / "tests").mkdir()
    jobs = [job("a", "sashimi/x.py", 3), job("b", "sashimi/model/n.cpp", 5, probe=("sashimi/model/n.py", range(1, 9)))]
    asked = {}

    def rounds(template, files, named=()):
        asked["files"] = files
        return [["tests/test_first.py"], ["tests/test_second.py"]]

    def measure(args, template, jobs, tests, deadline):
        asked["tests"] = tests
        raise coverage_run.Spent("the budget ended during coverage")

    monkeypatch.setattr(mutate, "plan_jobs", lambda args: (jobs, [], {}))
    monkeypatch.setattr(mutate, "make_template", lambda template, root: template.mkdir())
    monkeypatch.setattr(mutate, "commit", lambda root: "abc")
    monkeypatch.setattr(selection, "rounds", rounds)
    monkeypatch.setattr(mutate, "measure", measure)
    args = mutate.parse(["--root", str(tmp_path), "--diff", "HEAD", "--json"])
    assert mutate.run(args) == 3
    assert asked == {
        "files": ["sashimi/model/n.cpp", "sashimi/model/n.py", "sashimi/x.py"],
        "tests": ["tests/test_first.py"],
    }


@pytest.fixture(autouse=True)
def _quiet_stdout(capsys):
    """`run` prints its JSON report; the tests read only what they assert on."""
    yield
    out = capsys.readouterr().out
    if out.startswith("{"):
        json.loads(out)

"""The run's summary line, exit status, survivor list and Markdown page, field by field, against a
results list whose answer is counted here by hand; the page's commit read from the right checkout."""

import subprocess

import numpy as np

import specs
from sashimi.harness import markdown, report
from sashimi.harness.plan import Skipped
from sashimi.harness.verdict import compare


def result(mutant_id, status, file="f.py", line=1, **fields):
    r = {"id": mutant_id, "file": file, "line": line, "operator": "op", "status": status, "gate": None}
    r["killed"] = status in ("killed", "error", "timeout")
    return r | fields


RESULTS = [
    result("a", "killed", killed_by="tests/t.py::k", change="x | y -> x & y"),
    result("b", "survived", file="g.py", line=7, detail="why", killed_by=None),
    result("c", "survived", line=3, killed_by=None),
    result("d", "error", killed_by="tests/t.py::e", gate="row r"),
]


def test_the_summary_line_names_every_count_and_the_budget_skips_stale_and_minutes():
    extra = {"budget": 5, "skipped": 4, "stale": 2, "minutes": 3.25}
    line = report.summary([*RESULTS, result("e", "not run")], 1, "on the change", extra)
    assert line == (
        "2 of 4 mutants on the change caught (1 killed, 1 by an error, 0 by a timeout); "
        "2 survived (0 likely equivalent: the same bytecode as the original); "
        "2 not run: the budget of 5 min ended; 4 lines skipped; 2 stale entries; 3.2 min"
    )
    assert "not run: the run was cut short;" in report.summary(RESULTS, 1, "here", {})
    assert "not run: the run was stopped" in report.summary(RESULTS, 1, "here", {"stopped": True, "budget": 5})
    assert report.summary(RESULTS, 0, "here", {}).endswith("; 0 lines skipped; 0 stale entries; 0.0 min")


def test_the_exit_status_is_the_documented_number():
    # the numbers the command's --help promises: 1 a survivor or stale entry, 3 unrun mutants, 0 all caught
    caught = [RESULTS[0], RESULTS[3]]
    assert report.exit_status(RESULTS, 0, 0, False) == 1
    assert report.exit_status(caught, 0, 1, False) == 1
    assert report.exit_status(caught, 2, 0, False) == 3
    assert report.exit_status(caught, 2, 0, True) == 0


def test_the_survivors_are_grouped_by_file_in_the_runs_order():
    lines = report.survivors_by_file(RESULTS)
    assert lines == ["g.py: 1 survived", "  g.py:7 op: SURVIVED", "f.py: 1 survived", "  f.py:3 op: SURVIVED"]


def test_the_page_has_one_row_per_mutant_stale_entry_and_skipped_line_and_counts_the_caught():
    old = {k: v for k, v in result("z", "killed", killed_by="tests/t.py::z").items() if k != "status"}
    page = markdown.markdown(
        [*RESULTS, old], {"entry": "gone"}, "cmd", 2.0, "the summary", [Skipped("s.py", 9, "a reason")], at="abc"
    )
    rows = [line for line in page.splitlines() if line.startswith("| ")][1:]
    assert rows == [
        "| `a` | f.py:1 | op | `x \\| y -> x & y` | killed | `tests/t.py::k` | - |",
        "| `b` | g.py:7 | op |  | SURVIVED | why | - |",
        "| `c` | f.py:3 | op |  | SURVIVED | - | - |",
        "| `d` | f.py:1 | op |  | error | `tests/t.py::e` | row r |",
        "| `z` | f.py:1 | op |  | killed | `tests/t.py::z` | - |",
        "| `entry` | - | STALE: gone | - | - | - | - |",
        "| - | s.py:9 | skipped: a reason | - | - | - | - |",
    ]
    assert "Commit `abc`; 2.0 min wall time" in page
    assert "```\nthe summary\n```" in page
    assert "3 of 5 mutants caught by the tests alone; 1 of 5 make the gate fail alone; 1 stale entries." in page
    assert "```\n\n```" not in markdown.markdown(RESULTS, {}, "cmd", 1.0, at="abc")  # no summary, no empty block


def git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def repository(root, dirty: bool) -> str:
    root.mkdir()
    git(root, "init", "-q")
    (root / "f.txt").write_text("one\n")
    git(root, "add", "f.txt")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    if dirty:
        (root / "f.txt").write_text("two\n")
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()


def test_the_page_names_the_commit_of_the_checkout_it_is_given(tmp_path, monkeypatch):
    clean, dirty = repository(tmp_path / "clean", False), repository(tmp_path / "dirty", True)
    monkeypatch.chdir(tmp_path / "dirty")  # the working folder is another checkout: only `root` counts
    assert markdown.commit(tmp_path / "clean") == clean
    monkeypatch.chdir(tmp_path / "clean")
    assert markdown.commit(tmp_path / "dirty") == dirty + " (with uncommitted changes)"
    (tmp_path / "none").mkdir()
    assert markdown.commit(tmp_path / "none") == "unknown"


def test_a_comparison_of_nothing_has_no_scale():
    verdict = compare(np.zeros(0), np.zeros(0), "kernel_float64")
    row = specs.load("tolerances")["kernel_float64"]
    assert verdict.passed and verdict.scale == 0.0 and verdict.bound == row["atol"] != row["atol"] + row["rtol"]

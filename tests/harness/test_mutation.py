"""The mutation catalogue survives refactors: every entry still applies, exactly once, and changes its file."""

import os
import sys

import pytest

from sashimi.harness.catalogue import CATALOGUE
from sashimi.harness.mutation import ROOT, apply, ordered_tests, run_tests, staleness


def test_ids_are_unique():
    ids = [m.id for m in CATALOGUE]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("mutant", CATALOGUE, ids=lambda m: m.id)
def test_every_mutant_applies_exactly_once(mutant):
    assert staleness(mutant, ROOT) is None
    assert mutant.find != mutant.replace


def test_apply_changes_only_the_mutated_file(tmp_path):
    mutant = CATALOGUE[0]
    target = tmp_path / mutant.file
    target.parent.mkdir(parents=True)
    original = (ROOT / mutant.file).read_text()
    target.write_text(original)
    assert apply(mutant, tmp_path) is None
    assert target.read_text() == original.replace(mutant.find, mutant.replace)
    assert apply(mutant, tmp_path).startswith("stale: the text to replace occurs 0 times")


def test_every_test_file_is_run_against_a_mutant():
    ran = set(ordered_tests(ROOT))
    assert ran == {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("test_*.py")}
    assert "tests/harness/test_gate.py" in ran


def test_the_expected_killer_runs_first_and_exists():
    for mutant in CATALOGUE:
        if mutant.kills:
            assert (ROOT / mutant.kills).is_file(), f"{mutant.id}: {mutant.kills} does not exist"
            assert ordered_tests(ROOT, mutant.kills)[0] == mutant.kills
    assert ordered_tests(ROOT, "")[0] == "tests/harness/test_gate.py"


def test_run_tests_names_the_first_failure_and_counts_no_tests_as_no_kill(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def test_ok():\n    pass\n\n\ndef test_bad():\n    assert False\n")
    pytest = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    assert run_tests([*pytest, "tests/test_x.py"], tmp_path, env, 60) == (True, "tests/test_x.py::test_bad")
    assert run_tests([*pytest, "tests/test_x.py", "-k", "ok"], tmp_path, env, 60) == (False, None)
    assert run_tests([*pytest, "tests/test_x.py", "-k", "nothing"], tmp_path, env, 60) == (False, None)  # exit 5

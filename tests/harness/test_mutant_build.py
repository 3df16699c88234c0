"""A C++ mutant is built before its tests run: one that builds goes on, one that does not compile
(or has no compiler) is invalid, never a kill, and one the budget cuts short is not run. The
mutated copy's `sashimi.model.native` is a stand-in here, steered by a file."""

import time

import pytest

from sashimi.harness.mutation import Outcome
from sashimi.harness.runner import build_native

NATIVE = """import time
from pathlib import Path

MODE = (Path(__file__).parents[2] / "mode").read_text()


def compiler():
    return None if MODE == "none" else "c++"


def build(cxx):
    if MODE == "slow":
        time.sleep(30)
    if MODE == "broken":
        raise RuntimeError("native_step.cpp:3:1: error: expected ';'")
    return "lib.so"
"""


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "sashimi" / "model").mkdir(parents=True)
    (tmp_path / "sashimi" / "__init__.py").write_text("")
    (tmp_path / "sashimi" / "model" / "__init__.py").write_text("")
    (tmp_path / "sashimi" / "model" / "native.py").write_text(NATIVE)
    return tmp_path


def build(tree, mode, deadline=None):
    (tree / "mode").write_text(mode)
    return build_native(tree, {"PYTHONPATH": str(tree)}, deadline)


def test_a_mutant_that_builds_goes_on_to_its_tests(tree):
    assert build(tree, "ok") is None
    assert build(tree, "ok", deadline=time.monotonic() + 60) is None


def test_a_mutant_that_cannot_be_built_is_invalid_with_the_compilers_last_line(tree):
    assert build(tree, "none") == Outcome("invalid", detail="no C++ compiler to build it")
    broken = build(tree, "broken")
    assert broken == Outcome(
        "invalid", detail="it does not compile: RuntimeError: native_step.cpp:3:1: error: expected ';'"
    )


def test_a_build_the_budget_cuts_short_is_not_run(tree):
    cut = Outcome("not run", detail="the budget ended while it was built")
    assert build(tree, "slow", deadline=time.monotonic() + 1) == cut
    assert build(tree, "ok", deadline=time.monotonic() - 1) == cut  # no time left

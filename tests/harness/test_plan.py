"""A catalogue entry applied to code: the change it reports, the lines whose tests judge it, and the
entries refused as stale, on a small module written here."""

import pytest

from sashimi.harness import anchor
from sashimi.harness.catalogue_types import Mutant
from sashimi.harness.plan import catalogue_job, text_job

MODULE = "def f(x):\n    y = (x +\n         1)\n    return y * 2\n"


@pytest.fixture
def project(tmp_path):
    (tmp_path / "sashimi").mkdir()
    (tmp_path / "sashimi" / "m.py").write_text(MODULE)
    return tmp_path


def test_an_entry_reports_its_change_and_every_line_of_its_statement(project):
    job = catalogue_job(Mutant("two-lines", "sashimi/m.py", "f", "y = x + 1", "y = x - 1", "sign"), project)
    assert job.change == "y = x + 1 -> y = x - 1"
    assert (job.line, job.lines) == (2, range(2, 4))  # the statement spans lines 2 and 3
    assert job.text == MODULE.replace("(x +\n         1)", "x - 1")
    one = catalogue_job(Mutant("times", "sashimi/m.py", "f", "y * 2", "y * 3", "factor"), project)
    assert (one.change, one.line, one.lines) == ("y * 2 -> y * 3", 4, range(4, 5))


def test_an_entry_that_changes_nothing_is_stale(project):
    with pytest.raises(anchor.Stale, match="the replacement leaves the code unchanged"):
        catalogue_job(Mutant("same", "sashimi/m.py", "f", "y * 2", "y*2", "nothing"), project)


def test_a_cpp_entry_spans_the_lines_of_its_text_and_is_stale_once_its_function_or_text_is_gone(tmp_path):
    (tmp_path / "step.cpp").write_text("int f() {\n  int a = 1 +\n          2;\n  return a + a;\n}\n")

    def entry(target, find, replace="0", append=""):
        return text_job(Mutant("e", "step.cpp", target, find, replace, "what", append), tmp_path)

    job = entry("f()", "1 +\n          2", "3", append="// end\n")
    assert (job.line, job.lines, job.change) == (2, range(2, 4), "1 +\n          2 -> 3")
    assert job.text == "int f() {\n  int a = 3;\n  return a + a;\n}\n// end\n"
    with pytest.raises(anchor.Stale, match=r"g\(\) is not in step.cpp"):
        entry("g()", "1 +")
    with pytest.raises(anchor.Stale, match="matches 3 times"):
        entry("f()", " a")  # int a, a + a
    with pytest.raises(anchor.Stale, match="matches 0 times"):
        entry("f()", "a - a")

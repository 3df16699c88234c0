"""A catalogue entry applied to code: the change it reports, the lines whose tests judge it, and the
entries refused as stale, on a small module written here."""

import ast
import subprocess
import warnings

import pytest

from sashimi.harness import anchor, operators, operators_cpp
from sashimi.harness.catalogue import CATALOGUE
from sashimi.harness.catalogue_types import Mutant
from sashimi.harness.mutation import ROOT
from sashimi.harness.plan import _cpp_jobs, _short, catalogue_job, catalogue_jobs, diff_jobs, same_bytecode, text_job

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
    (tmp_path / "step.cpp").write_text("\nint f() {\n  int a = 1 +\n          2;\n  return a + a;\n}\n")

    def entry(target, find, replace="0", append=""):
        return text_job(Mutant("e", "step.cpp", target, find, replace, "what", append), tmp_path)

    job = entry("f()", "1 +\n          2", "3", append="// end\n")
    assert (job.line, job.lines, job.change) == (3, range(3, 5), "1 +\n          2 -> 3")
    assert job.text == "\nint f() {\n  int a = 3;\n  return a + a;\n}\n// end\n"
    with pytest.raises(anchor.Stale, match=r"g\(\) is not in step.cpp"):
        entry("g()", "1 +")
    with pytest.raises(anchor.Stale, match="matches 3 times"):
        entry("f()", " a")  # int a, a + a
    with pytest.raises(anchor.Stale, match="matches 0 times"):
        entry("f()", "a - a")


def test_the_catalogue_gives_a_job_or_a_stale_reason_for_each_entry_asked(tmp_path):
    asked = [CATALOGUE[1].id, CATALOGUE[5].id]
    jobs, stale = catalogue_jobs(ROOT, asked)
    assert sorted([j.id for j in jobs] + list(stale)) == sorted(asked)
    jobs, stale = catalogue_jobs(tmp_path, asked)  # a tree without the code: both gone
    assert jobs == [] and sorted(stale) == sorted(asked) and all("defined in 0 files" in w for w in stale.values())


def test_the_lines_of_a_change_give_each_distinct_mutant_once_and_its_change_as_written(tmp_path):
    (tmp_path / "sashimi").mkdir()
    source = tmp_path / "sashimi" / "m.py"
    source.write_text("def f(x):\n    return x\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], cwd=tmp_path, check=True)
    text = "def f(x):\n    return x.sum(dim=-1)+1\n"
    source.write_text(text)
    jobs, _ = diff_jobs(tmp_path, "HEAD", per_line=100)
    normal = [ast.unparse(ast.parse(j.text)) for j in jobs]
    # independently: every candidate of line 2, as the module it makes, less the original's own
    expected = set()
    for c in operators.candidates(text, {2})[0][2]:
        new = (
            "" if c.new is None else "\n".join(ast.unparse(n) for n in (c.new if isinstance(c.new, list) else [c.new]))
        )
        expected.add(ast.unparse(ast.parse(anchor.splice(text, anchor.Place("m", (c.node,), {}), new))))
    expected.discard(ast.unparse(ast.parse(text)))
    assert len(normal) == len(set(normal)) == len(expected) and set(normal) == expected
    plus = [j for j in jobs if j.operator == "arithmetic: + -> -"]
    assert [j.change for j in plus] == ["x.sum(dim=-1)+1 -> x.sum(dim=-1) - 1"]  # the source as written


def test_a_long_change_is_cut_to_sixty_characters():
    assert _short("a  b\n   c") == "a b c"
    assert _short("x" * 60) == "x" * 60
    assert _short("x" * 61) == "x" * 57 + "..."
    assert _short("0123456789" * 7, width=12) == "012345678..."


def test_bytecode_equivalence_is_judged_quietly_and_a_mutant_that_does_not_compile_is_not_equivalent():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not same_bytecode("y = 1\n", "y = 1 is 1\n")  # a SyntaxWarning when compiled
        assert not same_bytecode("y = 1\n", "y = (\n")
        assert same_bytecode("y = 2\n", "y = 1 + 1\n")  # folded by the compiler
    assert caught == []


def test_a_cpp_line_gives_each_distinct_mutant_once_up_to_the_limit_and_is_judged_at_its_line(tmp_path):
    text = "int f(int a) {\n  return a + 1 < 2 * a;\n}\n"
    distinct = list(dict.fromkeys(m.text for m in operators_cpp.candidates(text, {2})[2]))
    assert len(distinct) > 3
    for per_line in (1, 3, len(distinct) + 5):
        jobs = _cpp_jobs("m.cpp", text, {2}, per_line, tmp_path)
        assert [j.text.splitlines()[1] for j in jobs] == distinct[:per_line]
        assert all(j.line == 2 and list(j.lines) == [2] for j in jobs)

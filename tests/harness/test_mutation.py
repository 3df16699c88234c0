"""The mutation engine: anchors survive refactors, operators change what they say, the runner
tells a killed mutant from a survivor. Stale catalogue entries are `sashimi.mutate`'s to report,
not the suite's: nothing here fails because an entry's target was changed."""

import ast
import builtins
import symtable
import textwrap

import numpy as np
import pytest

from sashimi.harness import anchor, operators, plan, selection
from sashimi.harness.catalogue import CATALOGUE
from sashimi.harness.mutation import ROOT, Job, make_copy, selected_tests


def test_ids_are_unique():
    ids = [m.id for m in CATALOGUE]
    assert len(ids) == len(set(ids))


def test_every_entry_names_the_test_file_that_kills_it():
    """`kills` runs first, so that a catalogue run stops at its first failure early."""
    assert [m.id for m in CATALOGUE if not m.kills or not (ROOT / m.kills).is_file()] == []


def mutated_trees(tree, only=None):
    """Each anchored entry's change as normalized source (what it replaces and by what)."""
    jobs, stale = plan.catalogue_jobs(tree, only)
    return {j.id: j.change for j in jobs}, stale


@pytest.fixture(scope="module")
def catalogue_jobs():
    jobs, stale = plan.catalogue_jobs(ROOT)
    assert sorted([j.id for j in jobs] + list(stale)) == sorted(m.id for m in CATALOGUE)  # each entry once
    return jobs


def test_every_mutated_file_parses_and_differs_where_the_entry_says(catalogue_jobs):
    for job in catalogue_jobs:
        original = (ROOT / job.file).read_text().splitlines()
        mutated = job.text.splitlines()
        if job.file.endswith(".py"):  # the native C++ entries are exact text (plan.text_job)
            ast.parse(job.text)
        assert mutated[: job.lines.start - 1] == original[: job.lines.start - 1], (
            job.id
        )  # nothing before the span moves


def undefined_names(source: str) -> set[str]:
    """Names a module reads that nothing in it binds and no builtin is: each a NameError when run."""
    module = symtable.symtable(source, "module.py", "exec")
    bound = {s.get_name() for s in module.get_symbols() if s.is_assigned() or s.is_imported()}
    read: set[str] = set()

    def walk(table):
        for s in table.get_symbols():
            if s.is_referenced() and (table is module or s.is_global()):
                read.add(s.get_name())
        for child in table.get_children():
            walk(child)

    walk(module)
    return read - bound - set(dir(builtins)) - {"__file__", "__name__", "__doc__"}


def test_no_entry_reads_a_name_its_mutated_module_lacks(catalogue_jobs):
    """An entry whose replacement calls a helper that is not appended (`append=`) fails by a
    NameError, not by the bug it names: a weaker kill than it claims."""
    lacking = {}
    for job in catalogue_jobs:
        if job.file.endswith(".py"):
            new = undefined_names(job.text) - undefined_names((ROOT / job.file).read_text())
            if new:
                lacking[job.id] = new
    assert lacking == {}
    assert undefined_names("import os\n\ndef f(x):\n    return os.sep + g(x) + len(x)\n") == {"g"}


@pytest.mark.nightly  # about 10 s: the scheduled job's (the catalogue job anchors every entry each night too)
def test_catalogue_survives_reformatting_renamed_locals_and_a_moved_function(tmp_path):
    """Every entry that anchors in today's code anchors, and mutates the same syntax, after the
    whole tree is reformatted (ast.unparse: other layout, no comments), a local variable of
    pool.py is renamed and model/pool.py's `fold` is moved to another module."""
    make_copy(tmp_path)
    for path in [*(tmp_path / "sashimi").rglob("*.py"), *(tmp_path / "reference").rglob("*.py")]:
        path.write_text(ast.unparse(ast.parse(path.read_text())) + "\n")
    before, stale_before = mutated_trees(tmp_path)
    original, _ = mutated_trees(ROOT)
    assert before == original  # formatting alone changes nothing in any mutant's change

    pool = tmp_path / "sashimi" / "model" / "pool.py"
    tree = ast.parse(pool.read_text())
    for node in ast.walk(tree):  # rename the local `x` of UpPool.forward
        if isinstance(node, ast.FunctionDef) and node.name == "forward" and "x" in {a.arg for a in node.args.args}:
            for inner in ast.walk(node):
                if isinstance(inner, ast.Name) and inner.id == "x":
                    inner.id = "signal"
                if isinstance(inner, ast.arg) and inner.arg == "x":
                    inner.arg = "signal"
    fold = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "fold")
    tree.body.remove(fold)
    tree.body.insert(0, ast.ImportFrom("sashimi.model.folding", [ast.alias("fold")], 0))
    pool.write_text(ast.unparse(tree))
    (pool.parent / "folding.py").write_text(ast.unparse(ast.Module([fold], [])))
    pool_entries = [m.id for m in CATALOGUE if m.file == "sashimi/model/pool.py"]  # what the edits can move
    after, stale_after = mutated_trees(tmp_path, pool_entries)
    assert len(pool_entries) > 5 and set(after) == set(pool_entries) - set(stale_before)
    assert set(stale_after) == set(stale_before) & set(pool_entries)
    moved = next(j for j in plan.catalogue_jobs(tmp_path, ["downpool-reshape-order"])[0])
    assert moved.file == "sashimi/model/folding.py"


def test_a_target_that_is_gone_is_stale_not_an_error(tmp_path):
    (tmp_path / "sashimi").mkdir()
    (tmp_path / "sashimi" / "m.py").write_text("def f(x):\n    return x + 1\n\n\ndef g(x):\n    return x + 1\n")
    assert anchor.locate(tmp_path, "sashimi/m.py", "f", "y + 1").line == 2  # y renamed to the code's x
    with pytest.raises(anchor.Stale, match="defined in 0 files"):
        anchor.locate(tmp_path, "sashimi/m.py", "h", "x + 1")
    with pytest.raises(anchor.Stale, match="matches 2 times"):
        anchor.locate(tmp_path, "sashimi/m.py", "", "x + 1")
    with pytest.raises(anchor.Stale, match="matches 0 times"):
        anchor.locate(tmp_path, "sashimi/m.py", "f", "x - 1")


def test_splice_replaces_only_the_matched_span():
    text = "def f(a, b):\n    # keep me\n    y = a[:, :-1] * 2  # and me\n    return y\n"
    place = anchor.Place("m.py", tuple(ast.parse(text).body[0].body[0].value.left.slice.elts[1:]), {})
    assert anchor.splice(text, place, "1:") == text.replace(":-1]", "1:]")
    stmt = anchor.Place("m.py", (ast.parse(text).body[0].body[0],), {})
    assert anchor.splice(text, stmt, "") == text.replace("y = a[:, :-1] * 2", "pass")


def run(source: str, expression: str, mutant: operators.Candidate, **values):
    """The expression's value before and after the mutant, computed by executing both texts."""
    scope = dict(np=np, **values)
    exec(source, scope)
    mutated = anchor.splice(
        source, anchor.Place("m.py", (mutant.node,), {}), "" if mutant.new is None else ast.unparse(mutant.new)
    )
    after = dict(np=np, **values)
    exec(mutated, after)
    return eval(expression, scope), eval(expression, after)


def test_generic_operators_on_a_small_function():
    source = "def f(x):\n    return 2 * x + 1 if x > 0 else -x\n"
    found = operators.candidates(source, {2})[0][2]
    assert {c.operator for c in found} >= {
        "arithmetic: * -> /",
        "arithmetic: + -> -",
        "constant: 2 -> 3",
        "constant: 1 -> 2",
        "comparison: > -> >=",
    }
    expected = {"arithmetic: * -> /": 2 / 3 + 1, "arithmetic: + -> -": 5, "constant: 2 -> 3": 10, "constant: 1 -> 2": 8}
    for c in found:
        if c.operator in expected:
            assert run(source, "f(3)", c) == (7, expected[c.operator]), c.operator
    boundary = next(c for c in found if c.operator == "comparison: > -> >=")
    assert run(source, "f(0)", boundary) == (0, 1)


def test_numerical_operators_compute_what_they_name():
    source = textwrap.dedent("""\
        def f(x, z):
            a = np.exp(x[1:-1]).sum(axis=0)
            b = np.conj(z).clip(0, 1)
            return a, b, a.astype(np.float64)
        """)
    x, z = np.arange(12.0).reshape(4, 3) / 10, np.array([0.5 + 2j, 3 - 1j])
    found = [c for line in operators.candidates(source, {2, 3, 4})[0].values() for c in line]
    by = {c.operator: c for c in found}
    _, (a, _, _) = run(source, "f(x, z)", by["slice: index 0 [1:-1] shifted by one"], x=x, z=z)
    np.testing.assert_array_equal(a, np.exp(x[2:]).sum(axis=0))
    _, (a, _, _) = run(source, "f(x, z)", by["axis: axis=0 -> 1"], x=x, z=z)
    np.testing.assert_array_equal(a, np.exp(x[1:-1]).sum(axis=1))
    _, (a, _, _) = run(source, "f(x, z)", by["function: exp -> softplus"], x=x, z=z)
    np.testing.assert_allclose(a, np.log1p(np.exp(x[1:-1])).sum(axis=0))
    _, (_, b, _) = run(source, "f(x, z)", by["conjugate: dropped"], x=x, z=z)
    np.testing.assert_array_equal(b, z.clip(0, 1))
    _, (_, b, _) = run(source, "f(x, z)", by["mask: .clip(...) dropped"], x=x, z=z)
    np.testing.assert_array_equal(b, np.conj(z))
    _, (_, _, c) = run(source, "f(x, z)", by["dtype: float64 -> float32"], x=x, z=z)
    assert c.dtype == np.float32


def test_the_named_killer_runs_first_even_where_coverage_cannot_see_it():
    """A test that runs the code in a child process executes no line under coverage; the entry's
    named killer file runs first anyway, all its tests, then the covering tests."""
    coverage = selection.Coverage(
        tests={"tests/a.py::test_child": 5.0, "tests/a.py::test_fast": 1.0, "tests/b.py::test_cover": 0.5},
        lines={"pkg.py": {2: {"tests/b.py::test_cover"}}},
    )
    job = Job("x", "pkg.py", 2, range(2, 3), "op", "", kills="tests/a.py")
    chosen, _ = selected_tests(job, coverage)
    assert chosen == ["tests/a.py::test_fast", "tests/a.py::test_child", "tests/b.py::test_cover"]
    assert selected_tests(Job("y", "pkg.py", 2, range(2, 3), "op", ""), coverage)[0] == ["tests/b.py::test_cover"]

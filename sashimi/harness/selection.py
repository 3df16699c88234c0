"""Which tests, and which families of the gate, execute which lines, and which tests a run
measures first.

The tests run under coverage.py with per-test contexts (pytest-cov's `--cov-context=test`,
pytest's `--durations=0` giving each test's time; `sashimi.harness.coverage_run`), so that a
mutant runs only the tests that execute its lines, fastest first. Lines executed only while
modules are imported (context "") select every measured test: a change there reaches them all
(except a function's default values and decorators, judged by the tests running its body:
`plan.called_lines`). Lines executed while a test was set up select every test of its file: a
module-scoped fixture runs them once, in its first test's setup, for all the tests that use it.
A run measures in rounds: first the test files that reach the changed code without going
through the shared test helpers (`rounds`), then, only for the mutants that survive those,
the rest of the fast suite.
"""

import ast
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

FAST = "not slow and not external and not nightly"  # the fast suite: a -m given here replaces pyproject's own
EVERYTHING = "*"  # a line executed at import time: every test and every family may see it
WHOLE_FILE = "::*"  # after a test file's name: every measured test of that file (`_test_context`)


@dataclass
class Coverage:
    """tests: nodeid -> seconds; lines[file][line] -> nodeids (or EVERYTHING); gate likewise ->
    families; broken: the tests that fail on the unmutated copy (nodeid or file -> the failure),
    never a kill; files: the test files measured."""

    tests: dict[str, float] = field(default_factory=dict)
    lines: dict[str, dict[int, set[str]]] = field(default_factory=dict)
    gate: dict[str, dict[int, set[str]]] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def tests_for(self, file: str, lines: range, import_time: bool = True) -> list[str] | None:
        """The tests executing any of `lines`, fastest first; None when none does, or when a line
        runs at import time and `import_time` says such a line reaches every test."""
        found = _union(self.lines, file, lines)
        if not import_time:
            found.discard(EVERYTHING)
        if not found or EVERYTHING in found:
            return None
        files = tuple(t.removesuffix("*") for t in found if t.endswith(WHOLE_FILE))
        found = {t for t in found if not t.endswith(WHOLE_FILE)} | {t for t in self.tests if t.startswith(files)}
        return sorted(found, key=lambda t: (self.tests.get(t, 0.0), t))

    def families_for(self, file: str, lines: range, families: list[str]) -> list[str]:
        """The gate's families executing any of `lines`, in `families`' order (all of them for a line
        run at import time)."""
        found = _union(self.gate, file, lines)
        return list(families) if EVERYTHING in found else [f for f in families if f in found]


def durations(output: str) -> dict[str, float]:
    """Each test's seconds (setup, call and teardown) from pytest's `--durations=0` table."""
    found: dict[str, float] = defaultdict(float)
    for seconds, nodeid in re.findall(r"^(\d+(?:\.\d+)?)s (?:setup|call|teardown) +(\S.*?)\s*$", output, re.MULTILINE):
        found[nodeid] += float(seconds)
    return dict(found)


def _union(table: dict[str, dict[int, set[str]]], file: str, lines: range) -> set[str]:
    by_line = table.get(file, {})
    return set().union(*(by_line.get(n, set()) for n in lines))


def _read(data_file: Path, root: Path, context) -> dict[str, dict[int, set[str]]]:
    from coverage import CoverageData

    data = CoverageData(basename=str(data_file))
    data.read()
    table: dict[str, dict[int, set[str]]] = {}
    for measured in data.measured_files():
        path = Path(measured)
        name = (path.resolve().relative_to(root.resolve()) if path.is_absolute() else path).as_posix()
        by_line: dict[int, set[str]] = defaultdict(set)
        for line, contexts in data.contexts_by_lineno(measured).items():
            by_line[line].update(context(c) for c in contexts)
        table[name] = dict(by_line)
    return table


def _test_context(context: str) -> str:
    """pytest-cov's `nodeid|phase` -> the test. A line run while a test was set up may belong to a
    fixture its file's later tests share (module or class scope: set up once, with the first test),
    so it reaches every test of that file; "" (import time) reaches every test."""
    if not context:
        return EVERYTHING
    test, bar, phase = context.rpartition("|")
    if not bar:
        return context
    return test.split("::", 1)[0] + WHOLE_FILE if phase == "setup" else test


def _module(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def _imports(path: Path) -> set[str]:
    """Every module an import statement of `path` names, with each parent package."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:  # the module: a parent below
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {".".join(n.split(".")[: i + 1]) for n in names for i in range(n.count(".") + 1)}


SHARED = ("conftest.py", "tests/helpers.py")  # imported by every test: reaching code through them says nothing


def test_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / "tests").rglob("test_*.py"))


def test_files_importing(root: Path, files: list[str]) -> list[str]:
    """The test files that import any of `files` directly or through other modules, not going
    through SHARED (which every test imports)."""
    modules = {
        p.relative_to(root).as_posix(): p for d in ("sashimi", "reference", "tests") for p in (root / d).rglob("*.py")
    }
    importers: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for imported in _imports(path):
            importers[imported].add(name)
    reached, todo = set(files), list(files)
    while todo:
        for importer in importers[_module(todo.pop())] - reached:
            reached.add(importer)
            if importer not in SHARED:
                todo.append(importer)
    return sorted(f for f in reached if f.startswith("tests/") and Path(f).name.startswith("test_"))


def mirror(file: str) -> str:
    """The test file named after a module: sashimi/model/kernel.py -> tests/model/test_kernel.py."""
    path = Path(file)
    parts = path.parts[1:-1] if path.parts[0] == "sashimi" else path.parts[:-1]
    return Path("tests", *parts, f"test_{path.stem}.py").as_posix()


def rounds(root: Path, files: list[str], named: tuple[str, ...] = ()) -> list[list[str]]:
    """The test files a run measures, round by round, each round only for the mutants that
    survived the ones before: the `named` test files (catalogue entries' expected killers) when
    there are any; the test files importing `files` directly and each file's mirror test; those
    importing them through other modules but not only through the shared helpers; the rest."""
    first = {f for f in named if (root / f).is_file()}
    # `files` as they are: a C++ file's name is no module, so no test imports it
    direct = {f for f in test_files(root) if _module_names(files) & _imports(root / f)}
    direct = (direct | {mirror(f) for f in files if (root / mirror(f)).is_file()}) - first
    reached = set(test_files_importing(root, files)) - direct - first
    rest = set(test_files(root)) - first - direct - reached
    return [sorted(r) for r in (first, direct, reached, rest) if r]


def _module_names(files: list[str]) -> set[str]:
    return {_module(f) for f in files}

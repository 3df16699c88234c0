"""Which tests, and which families of the gate, execute which lines: collected once per run.

The fast suite runs once under coverage.py with per-test contexts (pytest-cov's
`--cov-context=test`, pytest's `--durations=0` giving each test's time), and the gate once with
one context per family, so that a mutant runs only the tests that execute its lines, fastest
first. Lines executed only while modules are imported (context "")
select everything: a change there reaches every test.
"""

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

FAST = "not slow and not external"  # the fast suite: a -m given here replaces pyproject's own
EVERYTHING = "*"  # a line executed at import time: every test and every family may see it


@dataclass
class Coverage:
    """tests: nodeid -> seconds; lines[file][line] -> nodeids (or EVERYTHING); gate likewise -> families."""

    tests: dict[str, float] = field(default_factory=dict)
    lines: dict[str, dict[int, set[str]]] = field(default_factory=dict)
    gate: dict[str, dict[int, set[str]]] = field(default_factory=dict)

    def tests_for(self, file: str, lines: range) -> list[str] | None:
        """The tests executing any of `lines`, fastest first; None when none does (or all may)."""
        found = _union(self.lines, file, lines)
        if not found or EVERYTHING in found:
            return None
        return sorted(found, key=lambda t: (self.tests.get(t, 0.0), t))

    def families_for(self, file: str, lines: range, families: list[str]) -> list[str]:
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
    return context.rsplit("|", 1)[0] if context else EVERYTHING


def _module(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def _imports(path: Path) -> set[str]:
    """Every module an import statement of `path` names, with each parent package."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {".".join(n.split(".")[: i + 1]) for n in names for i in range(n.count(".") + 1)}


def test_files_importing(root: Path, files: list[str]) -> list[str] | None:
    """The test files that import any of `files` directly or through other modules, or None when
    every test does (conftest.py or tests/helpers.py imports one of them)."""
    modules = {
        p.relative_to(root).as_posix(): p for d in ("sashimi", "reference", "tests") for p in (root / d).rglob("*.py")
    }
    if (root / "conftest.py").is_file():
        modules["conftest.py"] = root / "conftest.py"
    importers: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for imported in _imports(path):
            importers[imported].add(name)
    reached, todo = set(files), list(files)
    while todo:
        for importer in importers[_module(todo.pop())] - reached:
            reached.add(importer)
            todo.append(importer)
    if {"conftest.py", "tests/helpers.py"} & reached:
        return None
    return sorted(f for f in reached if f.startswith("tests/") and Path(f).name.startswith("test_"))


def collect(
    root: Path,
    include: list[str] | None,
    jobs: str,
    env: dict,
    log,
    sources: tuple[str, ...] = ("sashimi", "reference"),
    with_gate: bool = True,
) -> Coverage:
    """Run the fast suite and the gate under coverage in `root`; `include` limits the files measured
    and the tests run to those that import them."""
    targets = test_files_importing(root, include) if include else None
    if targets == []:
        log("coverage: no test imports the changed files")
        return Coverage()
    with tempfile.TemporaryDirectory(prefix="sashimi-coverage-") as tmp:
        tmp = Path(tmp)
        rc = tmp / "coveragerc"
        rc.write_text(
            "[run]\nsource =\n"
            + "".join(f"    {s}\n" for s in sources)
            + "relative_files = True\n"
            + ("include =\n" + "".join(f"    {f}\n" for f in include) if include else "")
        )
        env = {**env, "COVERAGE_FILE": str(tmp / "tests.coverage")}
        what = "the fast suite" if targets is None else f"the {len(targets)} test files that import the changed code"
        log(f"coverage: {what} once with per-test contexts ...")
        workers = "0" if targets and len(targets) <= 2 else jobs  # starting workers costs more than a file or two
        suite = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-m",
                FAST,
                "-n",
                workers,
                "--durations=0",
                "--durations-min=0",
                f"--cov-config={rc}",
                *[f"--cov={s}" for s in sources],
                "--cov-context=test",
                "--cov-report=",
                *(targets or []),
            ],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        if suite.returncode != 0:
            tail = "\n".join((suite.stdout + suite.stderr).splitlines()[-15:])
            raise RuntimeError(
                f"the fast suite fails on the code before mutation (pytest exit {suite.returncode}); fix it "
                f"first:\n{tail}"
            )
        tests = durations(suite.stdout)
        lines = _read(tmp / "tests.coverage", root, _test_context)
        if not with_gate:
            return Coverage(tests, lines, {})
        log("coverage: the gate once, one context per family ...")
        env["COVERAGE_FILE"] = str(tmp / "gate.coverage")
        gate = subprocess.run(
            [sys.executable, "-m", "sashimi.harness.selection", str(rc)],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        if gate.returncode != 0:
            raise RuntimeError(f"the gate could not run under coverage:\n{gate.stderr[-2000:]}")
        return Coverage(tests, lines, _read(tmp / "gate.coverage", root, lambda c: c or EVERYTHING))


def startup_seconds(root: Path, env: dict, coverage: Coverage) -> float:
    """Seconds pytest takes to start and collect one test file here, now (load included): the
    part of every mutant's run that is not its tests."""
    if not coverage.tests:
        return 0.0
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-n",
            "0",
            "--co",
            "-p",
            "no:cacheprovider",
            min(coverage.tests).split("::")[0],
        ],
        cwd=root,
        env=env,
        capture_output=True,
    )
    return time.perf_counter() - start


def cached(
    root: Path, include: list[str] | None, jobs: str, env: dict, log, files: list[str], with_gate: bool = True
) -> Coverage:
    """`collect`, kept in .mutate-cache/ under a hash of every source file (`files`) and `include`:
    a second run on the same tree reuses it; any change to the code or the tests collects anew."""
    digest = hashlib.sha256(json.dumps([include, with_gate]).encode())
    for name in files:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    path = root / ".mutate-cache" / f"coverage-{digest.hexdigest()[:20]}.json"
    if path.is_file():
        raw = json.loads(path.read_text())
        log(f"coverage: reusing {path.relative_to(root)} (the tree is unchanged since it was collected)")
        return Coverage(raw["tests"], _sets(raw["lines"]), _sets(raw["gate"]))
    coverage = collect(root, include, jobs, env, log, with_gate=with_gate)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"tests": coverage.tests, "lines": _lists(coverage.lines), "gate": _lists(coverage.gate)})
    )
    tmp.replace(path)
    return coverage


def _sets(table: dict) -> dict[str, dict[int, set[str]]]:
    return {f: {int(n): set(v) for n, v in lines.items()} for f, lines in table.items()}


def _lists(table: dict[str, dict[int, set[str]]]) -> dict:
    return {f: {n: sorted(v) for n, v in lines.items()} for f, lines in table.items()}


def gate_under_coverage(rc: str) -> None:
    """Every family of the gate, each in its own coverage context (imports count as context "")."""
    import coverage

    cov = coverage.Coverage(config_file=rc, data_file=os.environ["COVERAGE_FILE"])
    cov.start()
    from sashimi.harness import gate

    for family in gate.FAMILIES:
        cov.switch_context(family)
        gate.run(only=[family])
    cov.stop()
    cov.save()


if __name__ == "__main__":
    gate_under_coverage(sys.argv[1])

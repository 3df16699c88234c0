"""Coverage for a mutation run: the chosen test files once under coverage.py in the unmutated
template copy (which makes it the baseline too: a test failing there is broken), and the gate once
with one context per family; kept in .mutate-cache/ and reused while the code is the same.

The cache key is the code without its comments (a `# mutate: skip` mark reuses what was measured)
plus the test files, the files measured and whether the gate ran; one entry per round, so a
second run of the same change measures nothing and spends its budget on mutants.
"""

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tokenize
from pathlib import Path

from sashimi.harness.mutation import child
from sashimi.harness.selection import EVERYTHING, FAST, Coverage, _read, _test_context, durations


class Spent(Exception):
    """The budget ended while coverage was being collected."""


def broken_tests(output: str) -> dict[str, str]:
    """The tests (or test files, on a collection error) a pytest run reports FAILED or ERROR, with why."""
    found = {}
    for kind, nodeid, why in re.findall(r"^(FAILED|ERROR) (\S+)(?: - (.*))?$", output, re.MULTILINE):
        found[nodeid] = f"{kind.lower()} on the unmutated copy" + (f": {why.strip()}" if why else "")
    return found


def collect(
    tree: Path,
    tests: list[str] | None,
    include: list[str] | None,
    jobs: str,
    env: dict,
    log,
    deadline: float | None = None,
    sources: tuple[str, ...] = ("sashimi", "reference"),
    with_gate: bool = False,
) -> Coverage:
    """Run `tests` (None: the fast suite) under coverage in `tree`, measuring `include` (None: all
    of `sources`); the tests that fail are recorded as broken, not raised."""
    with tempfile.TemporaryDirectory(prefix="sashimi-coverage-") as tmp:  # mutate: skip the name: unread
        tmp = Path(tmp)
        rc = tmp / "coveragerc"
        # coverage ignores `include` beside `source`: measuring only the changed files needs include alone
        measured = (
            "include =\n" + "".join(f"    {f}\n" for f in include)
            if include
            else "source =\n" + "".join(f"    {s}\n" for s in sources)
        )
        rc.write_text(f"[run]\n{measured}relative_files = True\n")
        env = {**env, "COVERAGE_FILE": str(tmp / "tests.coverage")}
        what = "the fast suite" if tests is None else f"{len(tests)} test files"
        log(f"coverage: {what} once with per-test contexts, in the unmutated copy ...")
        # starting workers costs more than a file or two
        workers = "0" if tests and len(tests) <= 2 else jobs  # mutate: skip a speed rule: workers change no verdict
        cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-m", FAST, "-n", workers, "--durations=0"]
        cmd += ["--durations-min=0", f"--cov-config={rc}", "--cov"]
        cmd += ["--cov-context=test", "--cov-report=", "--continue-on-collection-errors", *(tests or [])]
        suite = _run(cmd, tree, env, deadline)
        output = suite.stdout + suite.stderr
        if suite.returncode not in (0, 1, 5):
            raise RuntimeError(f"pytest could not run the tests (exit {suite.returncode}):\n{output[-2000:]}")
        data = tmp / "tests.coverage"
        lines = _read(data, tree, _test_context) if data.exists() else {}
        coverage = Coverage(durations(suite.stdout), lines, {}, broken_tests(output), tests or [])
        if not with_gate:
            return coverage
        log("coverage: the gate once, one context per family ...")
        env["COVERAGE_FILE"] = str(tmp / "gate.coverage")
        gate = _run([sys.executable, "-m", "sashimi.harness.coverage_run", str(rc)], tree, env, deadline)
        if gate.returncode != 0:
            raise RuntimeError(f"the gate could not run under coverage:\n{gate.stderr[-2000:]}")
        coverage.gate = _read(tmp / "gate.coverage", tree, lambda c: c or EVERYTHING)
        return coverage


def _run(cmd: list[str], tree: Path, env: dict, deadline: float | None) -> subprocess.CompletedProcess:
    left = None if deadline is None else deadline - time.monotonic()
    if left is not None and left <= 0:
        raise Spent("the budget ended before coverage could start")
    try:
        return child(cmd, tree, env, left)
    except subprocess.TimeoutExpired:
        raise Spent("the budget ended while coverage was being collected") from None


def code_digest(tree: Path, files: list[str]) -> str:
    """A hash of `files` as code: Python without its comments (line numbers kept), others whole."""
    digest = hashlib.sha256()
    for name in sorted(files):
        data = (tree / name).read_bytes()
        if name.endswith(".py"):
            try:
                tokens = tokenize.tokenize(io.BytesIO(data).readline)
                # a line's end by its line alone: a comment added before it moves its column
                ends = (tokenize.NEWLINE, tokenize.NL)
                kept = [
                    (t.type, t.string, t.start[0] if t.type in ends else t.start)
                    for t in tokens
                    if t.type != tokenize.COMMENT
                ]
                data = repr(kept).encode()
            except (tokenize.TokenError, SyntaxError):
                pass
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def cached(cache: Path, tree: Path, files: list[str], tests: list[str] | None, include, **collect_args) -> Coverage:
    """`collect`, kept in `cache` under the code's digest and what was asked; reused while both hold."""
    key = json.dumps([code_digest(tree, files), tests, include, collect_args.get("with_gate", False)])
    path = cache / f"coverage-{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"
    log = collect_args["log"]
    if path.is_file():
        raw = json.loads(path.read_text())
        log(f"coverage: reusing {path.name} (the code is unchanged since it was measured)")
        return Coverage(raw["tests"], _sets(raw["lines"]), _sets(raw["gate"]), raw["broken"], raw["files"])
    coverage = collect(tree, tests, include, **collect_args)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    raw = {"tests": coverage.tests, "lines": _lists(coverage.lines), "gate": _lists(coverage.gate)}
    tmp.write_text(json.dumps({**raw, "broken": coverage.broken, "files": coverage.files}))
    tmp.replace(path)
    return coverage


def startup_seconds(tree: Path, env: dict, coverage: Coverage) -> float:
    """Seconds pytest takes to start and collect one test file here, now (load included): the
    part of every mutant's run that is not its tests."""
    if not coverage.tests:
        return 0.0
    start = time.perf_counter()
    one = min(coverage.tests).split("::")[0]
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0", "--co", "-p", "no:cacheprovider", one]
    subprocess.run(cmd, cwd=tree, env=env, capture_output=True)
    return time.perf_counter() - start


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
    cov.stop()  # mutate: skip the child ends at once: save() writes what was measured either way
    cov.save()


if __name__ == "__main__":
    gate_under_coverage(sys.argv[1])

"""Run mutants: each applied alone to a temporary copy of the checkout, judged by the tests that
execute its lines (fastest first, stopping at the first failure) and, apart, by the gate
families that execute them. A mutant is killed when a test fails; the gate's verdict is
reported beside it. Run from a source checkout (tests/ beside sashimi/).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from sashimi.harness.selection import FAST, Coverage
from sashimi.harness.verdict import Verdict

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = [
    "specs",
    "golden",
    "identity",
    "reference",
    "published",
]  # sashimi.harness.gate.FAMILIES, without importing torch here


@dataclass(frozen=True)
class Job:
    """One mutant ready to run: the file's new text, and the lines whose tests judge it."""

    id: str
    file: str
    line: int
    lines: range
    operator: str
    text: str
    kills: str = ""  # a test file to run first (the catalogue's expected killer)
    change: str = ""  # the code replaced and its replacement, as normalized source


def source_files(root: Path = ROOT) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True, text=True, check=True
    )
    return [line for line in out.stdout.splitlines() if line and (root / line).is_file()]


def make_copy(dest: Path, root: Path = ROOT) -> None:
    for name in source_files(root):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)


def environment(tree: Path, fixtures: Path | None) -> dict:
    """The mutated copy first on the path; one thread per process (mutants run side by side)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "HYPOTHESIS_PROFILE": "mutate",  # the ci profile's examples, no shrinking: the first failure kills
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    if fixtures is not None:
        env["SASHIMI_FIXTURES"] = str(fixtures)
    return env


def first(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text, re.MULTILINE)
    return match.group(1).strip() if match else None


def run_tests(cmd: list[str], tree: Path, env: dict, timeout: int | float) -> tuple[bool, str | None]:
    """(killed, the first failing test) of one pytest run in the mutated copy; exit 5 (no test ran) is no kill."""
    try:
        tests = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return True, f"timeout after {timeout:.0f} s"
    if tests.returncode in (0, 5):
        return False, None
    output = tests.stdout + tests.stderr
    return True, first(r"^FAILED (\S+)", output) or first(r"^ERROR (\S+)", output) or f"pytest exit {tests.returncode}"


def selected_tests(job: Job, coverage: Coverage) -> tuple[list[str], str]:
    """The tests to run against `job`, in order, and how they were chosen."""
    chosen = coverage.tests_for(job.file, job.lines)
    how = "the tests executing its lines"
    if not coverage.tests:
        return [], "none: no test imports this code"
    if chosen is None:
        chosen = sorted(coverage.tests, key=lambda t: (coverage.tests[t], t))
        how = "every test (its lines run at import time, or in no test's process)"
    if job.kills:
        # the named killer's tests run first, all of them: coverage cannot see the lines a test runs
        # in a child process (the 16-bit memory probe, the command-line tests)
        named = sorted(
            (t for t in coverage.tests if t.startswith(job.kills + "::")), key=lambda t: (coverage.tests[t], t)
        )
        chosen = named + [t for t in chosen if t not in set(named)]
    return chosen, how


def stages(tests: list[str], kills: str) -> list[list[str]]:
    """The expected killer's tests (else the 20 fastest) first, in a process that collects little;
    the rest only if those pass."""
    first = [t for t in tests if kills and t.startswith(kills + "::")] or tests[:20]
    rest = [t for t in tests if t not in set(first)]
    return [s for s in (first, rest) if s]


def run_gate(tree: Path, env: dict, families: list[str], fixtures: Path | None, timeout: int | float) -> str:
    """'passed', 'not reached' (no family executes the lines) or the first failing row."""
    if not families:
        return "not reached"
    cmd = [sys.executable, "-m", "sashimi.check", "--exitfirst", *[f"--only={f}" for f in families]] + (
        ["--fixtures", str(fixtures)] if fixtures else []
    )
    try:
        check = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timeout after {timeout:.0f} s"
    output = check.stdout + check.stderr
    if check.returncode == 0:
        return "passed"
    return (
        first(r"^FAILED: (.+?):\s*measured", output)
        or first(r"^(error: .+)$", output)
        or first(r"(\w+Error: .+)$", output)
        or f"exit {check.returncode}"
    )


def run_job(
    job: Job,
    coverage: Coverage,
    fixtures: Path | None,
    with_gate: bool,
    timeout: int | float,
    root: Path = ROOT,
    startup: float = 10.0,
) -> dict:
    """One mutant. Its tests may take ten times what they took before mutation, pytest's startup
    (`startup`, measured under the current load) included, before a timeout counts as a kill."""
    start = time.perf_counter()
    tests, how = selected_tests(job, coverage)
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        tree = Path(tmp)
        make_copy(tree, root)
        (tree / job.file).write_text(job.text)
        env = environment(tree, fixtures)
        if not job.file.endswith(".py"):  # a mutated native source builds into the copy, not the user's cache
            env["SASHIMI_CACHE"] = str(tree / ".native-cache")
        pytest = [sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider", "-m", FAST]
        killed, killer = False, None
        for stage in stages(tests, job.kills):
            limit = min(timeout, 30 + 10 * (startup + sum(coverage.tests.get(t, 1.0) for t in stage)))
            killed, killer = run_tests([*pytest, *stage], tree, env, limit)
            if killed:
                break
        families = coverage.families_for(job.file, job.lines, FAMILIES) if with_gate else []
        gate = run_gate(tree, env, families, fixtures, timeout) if with_gate else None
    return {
        "id": job.id,
        "file": job.file,
        "line": job.line,
        "operator": job.operator,
        "killed": killed,
        "killed_by": killer,
        "tests_run": len(tests),
        "selection": how,
        "gate": gate,
        "gate_families": families,
        "seconds": round(time.perf_counter() - start, 1),
    }


def run_all(
    jobs: list[Job],
    coverage: Coverage,
    fixtures: Path | None,
    with_gate: bool,
    timeout: float,
    parallel: int,
    deadline: float | None,
    log,
    startup: float = 10.0,
) -> tuple[list[dict], list[Job]]:
    """Every job, `parallel` at a time, none started after `deadline` (time.monotonic()); returns the
    results in the jobs' order and the jobs left unrun."""
    results: dict[str, dict] = {}
    pending = list(jobs)
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        running = {}
        while pending or running:
            while pending and len(running) < parallel and (deadline is None or time.monotonic() < deadline):
                job = pending.pop(0)
                running[pool.submit(run_job, job, coverage, fixtures, with_gate, timeout, ROOT, startup)] = job
            if not running:
                break
            done = next(as_completed(running))
            job = running.pop(done)
            results[job.id] = r = done.result()
            log(f"[{len(results)}/{len(jobs)}] {line_of(r)} ({r['seconds']} s)")
    return [results[j.id] for j in jobs if j.id in results], pending


def line_of(r: dict) -> str:
    """`file:line operator: killed by <test>` or `SURVIVED`, with the gate's verdict beside it."""
    verdict = f"killed by {r['killed_by']}" if r["killed"] else "SURVIVED"
    gate = f"; gate: {r['gate']}" if r.get("gate") else ""
    return f"{r['file']}:{r['line']} {r['operator']}: {verdict}{gate}"


def verdict(r: dict) -> Verdict:
    """A killed mutant passes; a survivor fails."""
    return Verdict(
        "mutant",
        f"{r['file']}:{r['line']} {r['operator']}",
        "killed" if r["killed"] else "SURVIVED",
        "killed",
        r["killed"],
        comment=f"by {r['killed_by']}" if r["killed"] else f"{r['tests_run']} tests run: {r['selection']}",
    )

"""Run mutants: each applied alone to a copy of the checkout, judged by the tests that execute its
lines (fastest first, stopping at the first failure) and, apart, by the gate families that
execute them. Run from a source checkout (tests/ beside sashimi/).

Every copy is a git work tree (tests that list the tracked files see the same files as in a
clone), made from one template per run; the template is where the unmutated baseline ran, and a
test that fails there is broken, never a kill. A mutant's verdict is one of STATUSES.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sashimi.harness.selection import Coverage

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = [
    "specs",
    "golden",
    "identity",
    "reference",
    "published",
]  # sashimi.harness.gate.FAMILIES, without importing torch here
# killed: a test failed; error: a test errored (collection, fixture, a crash of the process);
# timeout: the tests ran past ten times their time; survived: every selected test passed;
# not run: the budget ended first; invalid: the mutant does not build (C++), no program to judge;
# equivalent: it compiles to the original's bytecode, so no test can tell them apart (not run)
STATUSES = ("killed", "error", "timeout", "survived", "not run", "invalid", "equivalent")
CAUGHT = ("killed", "error", "timeout")
LIVE: set[subprocess.Popen] = set()  # the child processes running now (`child`)
STOPPING = threading.Event()  # set by `stop_children`: no child starts after it


class Stopped(Exception):
    """The run was stopped (SIGTERM, Ctrl-C): no child process may start."""


def child(cmd: list[str], cwd: Path, env: dict | None = None, timeout: float | int | None = None):
    """subprocess.run(cmd, capture_output=True, text=True, timeout=timeout), in a process group of
    its own that a timeout or `stop_children` ends whole: pytest's workers, a test's torchrun or
    compiler are not left running."""
    if STOPPING.is_set():
        raise Stopped
    pipe = subprocess.PIPE
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=pipe, stderr=pipe, text=True, start_new_session=True) as proc:
        LIVE.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()  # mutate: skip the with block's exit also closes the pipes and waits for it
            raise
        finally:
            LIVE.discard(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # mutate: skip the group ended on its own meanwhile
        pass


def stop_children() -> None:
    """End every running child's process group; none starts after this."""
    STOPPING.set()
    for proc in list(LIVE):
        _kill_group(proc)


def _stop(signum, frame) -> None:
    stop_children()
    raise KeyboardInterrupt


@contextlib.contextmanager
def stoppable():
    """SIGTERM and Ctrl-C end the children first (each in its own process group, out of the
    terminal's reach), then raise KeyboardInterrupt: the run reports what it finished and removes
    its copies. The handlers before are restored after."""
    STOPPING.clear()
    before = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        STOPPING.clear()  # a caller in the same process may start children again


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
    change: str = ""  # the code replaced and its replacement
    column: int = 0
    probe: tuple[str, range] | None = None  # where coverage sees code it cannot trace (C++: its Python caller)
    equivalent: bool = False  # compiles to the original's bytecode (plan.same_bytecode): not run


@dataclass(frozen=True)
class Outcome:
    """What one pytest run in a mutated copy says: a STATUS, the test, and why."""

    status: str
    test: str | None = None
    detail: str = ""


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


def make_template(dest: Path, root: Path = ROOT) -> None:
    """The checkout's files as one commit of a new git work tree: what every mutant copies. A git
    command that fails raises RuntimeError with git's own message."""
    make_copy(dest, root)
    who = {**os.environ, "GIT_AUTHOR_NAME": "mutate", "GIT_AUTHOR_EMAIL": "mutate@localhost"}
    who |= {"GIT_COMMITTER_NAME": "mutate", "GIT_COMMITTER_EMAIL": "mutate@localhost"}
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "--no-verify", "-m", "template"]):
        done = subprocess.run(["git", *cmd], cwd=dest, env=who, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"the template's `git {' '.join(cmd)}` failed in {dest}: {done.stderr.strip()}")


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


def classify(returncode: int, output: str) -> Outcome:
    """A finished pytest run: exit 0 or 5 (no test ran) passes; a FAILED test kills; an ERROR
    (fixture or collection), a usage or internal error, or a crash of the process is an error."""
    if returncode in (0, 5):
        return Outcome("survived")
    failed = first(r"^FAILED (\S+)", output)
    if returncode == 1 and failed:
        return Outcome("killed", failed, first(r"^FAILED \S+ - (.+)$", output) or "")
    errored = first(r"^ERROR (\S+)", output)
    if returncode < 0:  # mutate: skip <=: 0 returned above
        return Outcome("error", errored or failed, f"the test process died (signal {-returncode})")
    what = {1: "a fixture error", 2: "a collection error", 3: "an internal error", 4: "a usage error"}
    kind = what.get(returncode, f"pytest exit {returncode}")
    if "ERROR collecting" in output or re.search(r"^ERROR \S+\.py( |$)", output, re.MULTILINE):
        kind = "a collection error"  # pytest exits 2, or 4 when the test ids it was given could not be collected
    detail = first(r"^E\s+(\S.*)$", output) or f"pytest exit {returncode}"
    return Outcome("error", errored or failed, f"{kind}: {detail}")


def run_tests(cmd: list[str], tree: Path, env: dict, limit: float | int, deadline: float | None = None) -> Outcome:
    """One pytest run in the mutated copy, stopped at `limit` seconds (a timeout: the mutant made
    the tests run away) or at `deadline` (time.monotonic(); the budget ended: not run)."""
    left = None if deadline is None else deadline - time.monotonic()
    if left is not None and left <= 0:
        return Outcome("not run", detail="the budget ended before its tests")
    cut_by_budget = left is not None and left < limit
    try:
        tests = child(cmd, tree, env, left if cut_by_budget else limit)
    except subprocess.TimeoutExpired:
        if cut_by_budget:
            return Outcome("not run", detail="the budget ended during its tests")
        return Outcome("timeout", detail=f"its tests ran past {limit:.0f} s")
    return classify(tests.returncode, tests.stdout + tests.stderr)


def selected_tests(job: Job, coverage: Coverage) -> tuple[list[str], str]:
    """The tests to run against `job`, in order, and how they were chosen; tests that fail on the
    unmutated copy (coverage.broken) are never chosen."""
    if not coverage.tests:
        return [], "none: no test imports this code"
    if job.probe:
        chosen = coverage.tests_for(*job.probe, import_time=False) or []
        how = f"the tests executing {job.probe[0]} (what loads and calls it)"
    else:
        chosen = coverage.tests_for(job.file, job.lines)
        how = "the tests executing its lines"
    if chosen is None:
        chosen = sorted(coverage.tests, key=lambda t: (coverage.tests[t], t))
        how = "every measured test (its lines run at import time, or in no test's process)"
    if job.kills:
        # the named killer's tests run first, all of them: coverage cannot see the lines a test runs
        # in a child process (the 16-bit memory probe, the command-line tests)
        named = sorted(
            (t for t in coverage.tests if t.startswith(job.kills + "::")), key=lambda t: (coverage.tests[t], t)
        )
        chosen = named + [t for t in chosen if t not in set(named)]
    return [t for t in chosen if t not in coverage.broken], how


def stages(tests: list[str], kills: str) -> list[list[str]]:
    """The expected killer's tests (else the 20 fastest) first, in a process that collects little;
    the rest only if those pass."""
    first = [t for t in tests if kills and t.startswith(kills + "::")] or tests[:20]
    rest = [t for t in tests if t not in set(first)]
    return [s for s in (first, rest) if s]


def judge(stage_outcomes: list[Outcome]) -> Outcome:
    """The stages' one verdict: the first stage that did not pass decides; all passed: survived."""
    return next((o for o in stage_outcomes if o.status != "survived"), Outcome("survived"))


def run_gate(tree: Path, env: dict, families: list[str], fixtures: Path | None, timeout: int | float) -> str:
    """'passed', 'not reached' (no family executes the lines) or the first failing row."""
    if not families:
        return "not reached"
    cmd = [sys.executable, "-m", "sashimi.check", "--exitfirst", *[f"--only={f}" for f in families]] + (
        ["--fixtures", str(fixtures)] if fixtures else []
    )
    try:
        check = child(cmd, tree, env, timeout)
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

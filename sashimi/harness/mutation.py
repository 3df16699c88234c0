"""Does the harness catch real bugs? Each mutant of the catalogue applied alone to a copy of the checkout.

In the copy the fast suite runs with `-x` (`pytest -x -m "not slow"`), and `python -m
sashimi.check` runs too. A mutant is killed when the suite fails; the report names the first
failing test and the first failing check. Run from a source checkout (tests/ beside sashimi/).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sashimi.harness.catalogue import Mutant
from sashimi.harness.verdict import Verdict

ROOT = Path(__file__).resolve().parents[2]


def source_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line and (ROOT / line).is_file()]


def make_copy(dest: Path) -> None:
    for name in source_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def staleness(mutant: Mutant, tree: Path) -> str | None:
    """None when the mutant's text occurs exactly once in its file under `tree`, else why not."""
    path = tree / mutant.file
    if not path.is_file():
        return f"stale: {mutant.file} does not exist"
    count = path.read_text().count(mutant.find)
    return None if count == 1 else f"stale: the text to replace occurs {count} times in {mutant.file}"


def apply(mutant: Mutant, tree: Path) -> str | None:
    """Apply in the copy; returns an error when the mutant no longer matches the source exactly once."""
    error = staleness(mutant, tree)
    if error:
        return error
    path = tree / mutant.file
    path.write_text(path.read_text().replace(mutant.find, mutant.replace) + mutant.append)
    return None


def environment(tree: Path, fixtures: Path | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "HYPOTHESIS_PROFILE": "ci", "PYTHONDONTWRITEBYTECODE": "1"}
    if fixtures is not None:
        env["SASHIMI_FIXTURES"] = str(fixtures)
    return env


# the broadest and quickest killers first, so that `-x` stops early
FIRST = ["harness/test_gate.py", "model/test_lm.py", "model/test_kernel.py", "model/test_s4.py", "model/test_pool.py", "audio/test_quantize.py",
         "audio/test_dataset.py", "training/test_loop.py"]


def ordered_tests(tree: Path, kills: str = "") -> list[str]:
    """Every test file: the mutant's expected killer first, then the broad quick killers, then the rest."""
    files = sorted(p.relative_to(tree / "tests").as_posix() for p in (tree / "tests").rglob("test_*.py"))
    first = [f for f in [kills.removeprefix("tests/"), *FIRST] if f in files]
    return [f"tests/{name}" for name in dict.fromkeys(first + files)]


def first(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text, re.MULTILINE)
    return match.group(1).strip() if match else None


def run_tests(cmd: list[str], tree: Path, env: dict, timeout: int) -> tuple[bool, str | None]:
    """(killed, the first failing test) of one pytest run in the mutated copy; exit 5 (no test ran) is no kill."""
    try:
        tests = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return True, f"timeout after {timeout} s"
    if tests.returncode in (0, 5):
        return False, None
    output = tests.stdout + tests.stderr
    return True, first(r"^FAILED (\S+)", output) or first(r"^ERROR (\S+)", output) or f"pytest exit {tests.returncode}"


def run_mutant(mutant: Mutant, fixtures: Path | None, jobs: str, with_check: bool, timeout: int) -> dict:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.id}-") as tmp:
        tree = Path(tmp)
        make_copy(tree)
        error = apply(mutant, tree)
        if error:
            return {"id": mutant.id, "what": mutant.what, "status": error, "killed_by": None, "check": None, "seconds": 0.0}
        env = environment(tree, fixtures)
        where = subprocess.run([sys.executable, "-c", "import sashimi; print(sashimi.__file__)"], cwd=tree, env=env, capture_output=True, text=True)
        if not where.stdout.strip().startswith(str(tree)):
            raise RuntimeError(f"the copy does not shadow the installed package: sashimi imports from {where.stdout.strip()}")
        pytest = [sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-p", "no:cacheprovider"]
        killed, killer = False, None
        if mutant.kills:  # the expected killer alone first, in one process: no collection of the whole suite
            killed, killer = run_tests([*pytest, "-n", "0", mutant.kills], tree, env, timeout)
        if not killed:
            killed, killer = run_tests([*pytest, "-n", jobs, *ordered_tests(tree, mutant.kills)], tree, env, timeout)
        check_result = None
        if with_check:
            check = subprocess.run([sys.executable, "-m", "sashimi.check"] + (["--fixtures", str(fixtures)] if fixtures else []),
                                   cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
            output = check.stdout + check.stderr
            check_result = "passed" if check.returncode == 0 else (first(r"^FAILED: (.+?):\s*measured", output) or first(r"^(error: .+)$", output)
                                                                   or first(r"(\w+Error: .+)$", output) or f"exit {check.returncode}")
    return {"id": mutant.id, "what": mutant.what, "status": "killed" if killed else "SURVIVED", "killed_by": killer, "check": check_result,
            "seconds": round(time.perf_counter() - start, 1)}


def verdict(result: dict) -> Verdict:
    """A killed mutant passes; a survivor or a stale entry fails."""
    return Verdict("mutant", f"{result['id']}: {result['what']}", f"{result['status']} by {result['killed_by']}", "killed",
                   result["status"] == "killed", comment=f"sashimi.check: {result['check']}" if result["check"] else "")


def markdown(results: list[dict], command: str) -> str:
    lines = ["# Mutation testing", "", "Each mutant is one realistic bug applied alone to a copy of `sashimi/`; the fast suite",
             "(`pytest -x -m \"not slow\"`, the tests alone) and `python -m sashimi.check` (the gate alone) run against it,",
             "each on its own. Reproduce with:", "", "```", command, "```", "",
             "One mutant: `python -m sashimi.mutate --only ID`; the catalogue: `python -m sashimi.mutate --list`.", "",
             "| mutant | bug | tests alone | first failing test | sashimi.check alone |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| `{r['id']}` | {r['what']} | {r['status']} | `{r['killed_by']}` | {r['check'] or '-'} |")
    killed = sum(r["status"] == "killed" for r in results)
    caught = sum(r["check"] not in (None, "passed") for r in results)
    lines += ["", f"{killed} of {len(results)} mutants killed by the tests; {caught} of {len(results)} make `sashimi.check` fail.", ""]
    return "\n".join(lines)

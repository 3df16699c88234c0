"""The mutants of one run, side by side: each in a fresh copy of the template, its tests in
stages, a C++ mutant built first (one that does not compile is invalid, not a kill), none
started after the deadline and none left running past it."""

import dataclasses
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from sashimi.harness.mutation import (
    CAUGHT,
    FAMILIES,
    Job,
    Outcome,
    child,
    environment,
    judge,
    run_gate,
    run_tests,
    selected_tests,
    stages,
    stop_children,
)
from sashimi.harness.selection import FAST, Coverage

BUILD = (
    "import sys; from sashimi.model import native; c = native.compiler(); sys.exit(native.build(c) and 0 if c else 3)"
)


@dataclass(frozen=True)
class Settings:
    """What every mutant of a run shares."""

    template: Path  # the unmutated copy (a git work tree) where the baseline ran
    fixtures: Path | None = None
    # the command passes every field (`python -m sashimi.mutate --timeout`, its measured startup): the
    # defaults below serve tests that build a Settings of their own
    with_gate: bool = False  # mutate: skip a default the command never takes
    timeout: float | int = 600  # mutate: skip a default the command never takes (its limit on one stage's tests)
    startup: float = 10.0  # mutate: skip a default the command never takes (pytest's start, measured)
    native_cache: Path | None = None  # built mutated native libraries, kept by source (native.build's key)


def stage_limit(tests: list[str], coverage: Coverage, settings: Settings) -> float:
    """Ten times what the stage took before mutation, startup included, plus 30 s of slack."""
    return min(float(settings.timeout), 30 + 10 * (settings.startup + sum(coverage.tests.get(t, 1.0) for t in tests)))


def build_native(tree: Path, env: dict, deadline: float | None) -> Outcome | None:
    """None when the mutated native source builds; else why the mutant cannot be judged."""
    left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
    try:
        done = child([sys.executable, "-c", BUILD], tree, env, left)
    except subprocess.TimeoutExpired:
        return Outcome("not run", detail="the budget ended while it was built")
    if done.returncode == 3:
        return Outcome("invalid", detail="no C++ compiler to build it")
    if done.returncode:
        return Outcome("invalid", detail="it does not compile: " + (done.stderr.strip().splitlines() or ["?"])[-1])
    return None


def run_job(job: Job, coverage: Coverage, settings: Settings, deadline: float | None = None) -> dict:
    """One mutant in its own copy of the template; its verdict and the gate's beside it."""
    start = time.perf_counter()
    tests, how = selected_tests(job, coverage)
    families: list[str] = []
    gate = None
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:  # mutate: skip the folder's name: unread
        tree = Path(tmp) / "tree"
        shutil.copytree(settings.template, tree, symlinks=True)
        (tree / job.file).write_text(job.text)
        env = environment(tree, settings.fixtures)
        outcome = Outcome("equivalent", detail="the same bytecode as the original") if job.equivalent else None
        if outcome is None and not job.file.endswith(
            ".py"
        ):  # a mutated native source builds apart from the user's cache
            env["SASHIMI_CACHE"] = str(settings.native_cache or tree / ".native-cache")
            outcome = build_native(tree, env, deadline)
        if outcome is None:
            pytest = [
                sys.executable,
                "-m",
                "pytest",
                "-x",
                "-q",
                "-rfE",
                "-n",
                "0",
                "-p",
                "no:cacheprovider",
                "-m",
                FAST,
            ]
            outcomes: list[Outcome] = []
            for stage in stages(tests, job.kills):
                outcomes.append(
                    run_tests([*pytest, *stage], tree, env, stage_limit(stage, coverage, settings), deadline)
                )
                if outcomes[-1].status != "survived":
                    break
            outcome = judge(outcomes)
        if settings.with_gate and outcome.status not in ("not run", "invalid", "equivalent"):
            families = coverage.families_for(job.file, job.lines, FAMILIES)
            gate = run_gate(tree, env, families, settings.fixtures, settings.timeout)
    return {
        "id": job.id,
        "file": job.file,
        "line": job.line,
        "column": job.column,
        "operator": job.operator,
        "change": job.change,
        "status": outcome.status,
        "killed": outcome.status in CAUGHT,
        "killed_by": outcome.test if outcome.status in CAUGHT else None,
        "detail": outcome.detail,
        "tests_run": len(tests),
        "selection": how,
        "gate": gate,
        "gate_families": families,
        "seconds": round(time.perf_counter() - start, 1),
    }


def run_all(
    jobs: list[Job], coverage: Coverage, settings: Settings, parallel: int, deadline: float | None, log
) -> tuple[list[dict], list[Job]]:
    """Every job, `parallel` at a time, none started after `deadline` (time.monotonic()); returns the
    results in the jobs' order (a job the deadline cut short says `not run`) and the jobs never started."""
    results: dict[str, dict] = {}
    pending = list(jobs)
    with ThreadPoolExecutor(max_workers=parallel) as pool:  # mutate: skip no more than `parallel` are submitted
        running = {}
        try:
            while pending or running:
                while (
                    pending
                    and len(running) < parallel  # mutate: skip <=: one more queued in the pool starts as one ends
                    and (deadline is None or time.monotonic() < deadline)
                ):
                    job = pending.pop(0)
                    running[pool.submit(run_job, job, coverage, settings, deadline)] = job
                if not running:
                    break
                done = next(as_completed(running))  # mutate: skip the first submitted: the same results, later
                job = running.pop(done)
                results[job.id] = r = done.result()
                log(f"[{len(results)}/{len(jobs)}] {line_of(r)} ({r['seconds']} s)")
        except KeyboardInterrupt:  # SIGTERM or Ctrl-C (sashimi.mutate): the running mutants are cut short
            stop_children()
            pending = [*running.values(), *pending]
    return [results[j.id] for j in jobs if j.id in results], pending


def liveness(jobs: list[Job], coverage: Coverage, settings: Settings, deadline: float | None = None) -> str | None:
    """A forced failure first (as mutmut's): the first Python mutant's file made to raise on import
    must fail its selected tests, else the tests do not see the copy (an installed package shadows
    it, say) and every verdict would be a survivor. None when live; else what is wrong. The probe is
    a mutant whose lines some measured test executes: lines none does are judged by every measured
    test, which need not import the module at all."""

    def probes(j: Job) -> bool:
        return (
            j.file.endswith(".py")
            and bool(coverage.tests_for(j.file, j.lines))
            and bool(selected_tests(j, coverage)[0])
        )

    probe = next((j for j in jobs if probes(j)), None)
    if probe is None:
        return None
    forced = dataclasses.replace(probe, text='raise RuntimeError("forced failure")\n', kills="", equivalent=False)
    result = run_job(forced, coverage, settings, deadline)
    if result["status"] in (*CAUGHT, "not run"):
        return None
    return (
        f"{probe.file} made to raise on import passed its {result['tests_run']} selected tests: the tests do not "
        "import the copied tree (is the package installed non-editable, or PYTHONPATH overridden?)"
    )


def line_of(r: dict) -> str:
    """`file:line:column operator `old -> new`: verdict`, with the gate's beside it."""
    where = f"{r['file']}:{r['line']}" + (f":{r['column']}" if r.get("column") else "")
    change = f" `{r['change']}`" if r.get("change") else ""
    status = r.get("status", "killed" if r["killed"] else "survived")
    verdict = {
        "killed": f"killed by {r['killed_by']}",
        "error": f"error in {r['killed_by']}: {r.get('detail', '')}",
        "timeout": f"timeout: {r.get('detail', '')}",
        "survived": "SURVIVED",
    }.get(status, f"{status}: {r.get('detail', '')}")
    gate = f"; gate: {r['gate']}" if r.get("gate") else ""
    return f"{where} {r['operator']}{change}: {verdict}{gate}"

"""docs/MUTATION.md from one run of `python -m sashimi.mutate`: commit, command, wall time, and
for each mutant the tests' verdict and the gate's, each on its own."""

import subprocess
from pathlib import Path

from sashimi.harness.mutation import ROOT


def commit(root: Path = ROOT) -> str:
    """The checkout's commit, marked when the tree has uncommitted changes."""
    head = (
        subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        or "unknown"
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    return head + (" (with uncommitted changes)" if dirty else "")


ENGINE = """## Why this engine

mutmut and cosmic-ray were evaluated first. mutmut 3 rewrites every function of the package into a
trampoline that dispatches to mutated copies, so the code under test is not the code users run:
the runtime shape checks and `torch.compile` of the fused step would see the trampolines; its
operators are generic and it has no mode for the lines of a change. cosmic-ray keeps its work in
a session database and runs one fixed test command per mutant: no per-mutant test selection from
coverage, and restricting it to a
diff is an open request upstream (sixty-north/cosmic-ray#484). Neither knows numerical code: no
dropped conjugate, float64 downcast, slice shifted by one sample or swapped reduction axis.
So the engine here is small and built on well-kept parts: the standard library's `ast` finds and
writes mutants (only the matched span of the file changes), coverage.py's per-test contexts
(through pytest-cov) choose the tests of each mutant, and pytest runs them.
"""


def gate_catches(results: list[dict]) -> int:
    """Mutants the gate alone fails on: a failing row or an error, not `passed`, `not reached` or absent."""
    return sum(r.get("gate") not in (None, "passed", "not reached") for r in results)


def markdown(
    results: list[dict],
    stale: dict[str, str],
    command: str,
    minutes: float,
    summary: str = "",
    skipped=(),
    at: str | None = None,
) -> str:
    """The page; `at` is the commit the run started from (`commit()` then), since the tree may move on."""
    lines = [
        "# Mutation testing",
        "",
        "Each mutant is one bug applied alone to a copy of the checkout. The tests that execute its",
        "lines (found by coverage, run fastest first, stopping at the first failure) judge it: *tests alone*.",
        "Apart, the families of `python -m sashimi.check` that execute its lines run against it: *gate alone*",
        "(`not reached` when no family executes them, `-` when the gate was not run). Regenerate this page with:",
        "",
        "```",
        f"{command} --markdown <this file>",
        "```",
        "",
        f"Commit `{at or commit()}`; {minutes:.1f} min wall time for the whole run (coverage included).",
        "",
    ]
    if summary:
        lines += ["```", summary, "```", ""]
    lines += [
        "| mutant | where | bug | change | tests alone | first failing test | gate alone |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        status = r.get("status", "killed" if r["killed"] else "survived")
        tests = {"survived": "SURVIVED"}.get(status, status)
        where = f"{r['file']}:{r['line']}"
        change = f"`{r['change']}`".replace("|", "\\|") if r.get("change") else ""
        test = f"`{r['killed_by']}`" if r.get("killed_by") else r.get("detail") or "-"
        lines.append(f"| `{r['id']}` | {where} | {r['operator']} | {change} | {tests} | {test} | {r['gate'] or '-'} |")
    for mutant_id, why in stale.items():
        lines.append(f"| `{mutant_id}` | - | STALE: {why} | - | - | - | - |")
    for s in skipped:
        lines.append(f"| - | {s.file}:{s.line} | skipped: {s.reason} | - | - | - | - |")
    killed = sum(r["killed"] for r in results)
    lines += [
        "",
        f"{killed} of {len(results)} mutants caught by the tests alone; {gate_catches(results)} of {len(results)} make "
        f"the gate fail alone; {len(stale)} stale entries.",
        "",
        ENGINE,
    ]
    return "\n".join(lines)

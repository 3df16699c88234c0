"""What a mutation run says: one summary line, the survivors grouped by file, the exit status.

Exit status: 0 when every mutant run was caught (killed, or made a test error or time out) and
none was left unrun; 1 when one survived or a catalogue entry is stale; 3 when none survived
but some were not run (the budget ended), unless the run allows a partial result; 2 is a usage
error (the command's)."""

from collections import Counter

from sashimi.harness.runner import line_of

SURVIVED, INCOMPLETE = 1, 3


def counts(results: list[dict]) -> Counter:
    return Counter(r["status"] for r in results)


def summary(results: list[dict], unrun: int, what: str, extra: dict) -> str:
    """`K of N mutants <what> caught (k killed, e errors, t timeouts); S survived (E likely
    equivalent); U not run: why; ...`. `extra` carries skipped lines, stale entries, broken tests,
    the budget and the minutes."""
    c = counts(results)
    not_run = c["not run"] + unrun
    judged = len(results) - c["not run"] - c["invalid"]
    caught = c["killed"] + c["error"] + c["timeout"]
    parts = [
        f"{caught} of {judged} mutants {what} caught ({c['killed']} killed, {c['error']} by an error, "
        f"{c['timeout']} by a timeout)",
        f"{c['survived'] + c['equivalent']} survived ({c['equivalent']} likely equivalent: the same bytecode "
        "as the original)",
    ]
    if not_run:
        why = (
            "the run was stopped (SIGTERM or Ctrl-C)"
            if extra.get("stopped")
            else f"the budget of {extra['budget']:g} min ended"
            if extra.get("budget")
            else "the run was cut short"
        )
        parts.append(f"{not_run} not run: {why}{extra.get('not_run_why', '')}")
    if c["invalid"]:
        parts.append(f"{c['invalid']} invalid (do not build)")
    if extra.get("broken"):
        parts.append(f"{extra['broken']} broken tests (fail on the unmutated copy; never a kill)")
    parts.append(f"{extra.get('skipped', 0)} lines skipped")
    parts.append(f"{extra.get('stale', 0)} stale entries")
    parts.append(f"{extra.get('minutes', 0.0):.1f} min")
    return "; ".join(parts)


def survivors_by_file(results: list[dict]) -> list[str]:
    """The survivors under one heading per file, in the run's order."""
    out: list[str] = []
    files = list(dict.fromkeys(r["file"] for r in results if r["status"] == "survived"))
    for file in files:
        mine = [r for r in results if r["file"] == file and r["status"] == "survived"]
        out.append(f"{file}: {len(mine)} survived")
        out += [f"  {line_of(r)}" for r in mine]
    return out


def exit_status(results: list[dict], unrun: int, stale: int, allow_partial: bool) -> int:
    c = counts(results)
    if c["survived"] or stale:
        return SURVIVED
    if (c["not run"] or unrun) and not allow_partial:
        return INCOMPLETE
    return 0

"""Which mutants to run: the catalogue's entries where they still anchor, or generated mutants on
the lines a change touched since a git revision."""

import ast
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sashimi.harness import anchor, operators
from sashimi.harness.catalogue import CATALOGUE, Mutant
from sashimi.harness.mutation import Job

HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@", re.MULTILINE)


@dataclass(frozen=True)
class Skipped:
    file: str
    line: int
    reason: str


def catalogue_job(mutant: Mutant, root: Path) -> Job:
    """The entry applied to today's code; raises anchor.Stale when its target or pattern is gone."""
    if not mutant.file.endswith(".py"):
        return text_job(mutant, root)
    statements = mutant.replace == "" or not _is_expression(mutant.find)
    place = anchor.locate(root, mutant.file, mutant.target, mutant.find, statements)
    before = "\n".join(ast.unparse(n) for n in place.nodes)
    after = "\n".join(ast.unparse(n) for n in anchor.render(mutant.replace, place.renaming, statements))
    if before == after:
        raise anchor.Stale("the replacement leaves the code unchanged")
    text = anchor.splice((root / place.file).read_text(), place, mutant.replace) + mutant.append
    span = range(place.nodes[0].lineno, place.nodes[-1].end_lineno + 1)
    return Job(mutant.id, place.file, place.line, span, mutant.what, text, mutant.kills, f"{before} -> {after}")


def text_job(mutant: Mutant, root: Path) -> Job:
    """An entry for a source that is not Python (the native step's C++): `find` is exact text that
    must occur once in the file, and `target` (the function it lies in) must still be named there."""
    path = root / mutant.file
    text = path.read_text() if path.is_file() else ""
    if mutant.target not in text:
        raise anchor.Stale(f"{mutant.target} is not in {mutant.file}")
    if text.count(mutant.find) != 1:
        raise anchor.Stale(f"the text matches {text.count(mutant.find)} times in {mutant.file}, not once")
    line = text[: text.index(mutant.find)].count("\n") + 1
    span = range(line, line + mutant.find.count("\n") + 1)
    mutated = text.replace(mutant.find, mutant.replace) + mutant.append
    return Job(
        mutant.id, mutant.file, line, span, mutant.what, mutated, mutant.kills, f"{mutant.find} -> {mutant.replace}"
    )


def catalogue_jobs(root: Path, only: list[str] | None = None) -> tuple[list[Job], dict[str, str]]:
    """Jobs for the catalogue (or the entries in `only`), and the stale entries with why."""
    jobs, stale = [], {}
    for mutant in CATALOGUE:
        if only and mutant.id not in only:
            continue
        try:
            jobs.append(catalogue_job(mutant, root))
        except (anchor.Stale, SyntaxError) as e:
            stale[mutant.id] = str(e)
    return jobs, stale


def _is_expression(source: str) -> bool:
    try:
        ast.parse(source.strip(), mode="eval")
        return True
    except SyntaxError:
        return False


def changed_lines(root: Path, rev: str) -> dict[str, set[int]]:
    """Lines added or modified since `rev` (committed or not) in the Python files of sashimi/ and
    reference/; tests and docs are not mutated."""
    diff = subprocess.run(
        ["git", "diff", "--unified=0", "--no-color", "--no-ext-diff", rev, "--", *anchor.ROOTS],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if diff.returncode != 0:
        raise ValueError(f"git diff against {rev!r} failed: {diff.stderr.strip() or 'unknown revision'}")
    changed: dict[str, set[int]] = {}
    for block in re.split(r"^diff --git ", diff.stdout, flags=re.MULTILINE)[1:]:
        target = re.search(r"^\+\+\+ (?:b/)?(.+)$", block, re.MULTILINE)
        if not target or target.group(1) == "/dev/null" or not target.group(1).endswith(".py"):
            continue
        lines = set()
        for start, count in HUNK.findall(block):
            lines.update(range(int(start), int(start) + (int(count) if count else 1)))
        if lines:
            changed[target.group(1)] = lines
    return changed


def diff_jobs(root: Path, rev: str, per_line: int) -> tuple[list[Job], list[Skipped]]:
    """Generated mutants on the lines changed since `rev`, at most `per_line` distinct ones a line,
    and the lines marked `# mutate: skip`."""
    jobs, skipped = [], []
    for file, lines in sorted(changed_lines(root, rev).items()):
        text = (root / file).read_text()
        by_line, marked = operators.candidates(text, lines)
        skipped += [Skipped(file, line, reason) for line, reason in sorted(marked.items())]
        for line, found in by_line.items():
            seen: set[str] = set()
            for c in found:
                mutated = anchor.splice(
                    text, anchor.Place(file, (c.node,), {}), "" if c.new is None else ast.unparse(c.new)
                )
                normal = ast.unparse(ast.parse(mutated))  # `dim=-1 -> -2` and `1 -> 2` there are one mutant
                if normal in seen or len(seen) == per_line:
                    continue
                seen.add(normal)
                span = range(c.node.lineno, c.node.end_lineno + 1)
                jobs.append(Job(f"{file}:{line}:{len(seen)}", file, line, span, c.operator, mutated))
    return jobs, skipped

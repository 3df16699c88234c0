"""Which mutants to run: the catalogue's entries where they still anchor, or generated mutants on
the lines a change touched since a git revision."""

import ast
import re
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from sashimi.harness import anchor, operators, operators_cpp
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
    # a deletion removes whole statements; any other pattern that is no expression is read as
    # statements by anchor.parse_pattern anyway
    statements = mutant.replace == ""
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


# where coverage sees a source it cannot trace: the Python module that loads and calls it (all of
# its functions: the step, the activations, the build; the kernel's sums), import-time lines aside
PROBES = {
    "sashimi/model/native_step.cpp": "sashimi/model/native.py",
    "sashimi/model/native_cauchy.cpp": "sashimi/model/native_kernel.py",
}
MUTATED = (".py", ".cpp")  # the languages --diff mutates: Python by syntax tree, C++ by text (operators_cpp)


def changed_lines(root: Path, rev: str) -> dict[str, set[int]]:
    """Lines added or modified since `rev` (committed or not) in the Python and C++ files of
    sashimi/ and reference/, under their new names after a rename; a deletion adds no line, and
    tests and docs are not mutated."""
    diff = subprocess.run(
        ["git", "diff", "-M", "--unified=0", "--no-color", "--no-ext-diff", rev, "--", *anchor.ROOTS],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if diff.returncode != 0:
        raise ValueError(f"git diff against {rev!r} failed: {diff.stderr.strip() or 'unknown revision'}")
    changed: dict[str, set[int]] = {}
    for block in re.split(r"^diff --git ", diff.stdout, flags=re.MULTILINE)[1:]:
        target = re.search(r"^\+\+\+ (?:b/)?(.+)$", block, re.MULTILINE)
        if not target or target.group(1) == "/dev/null" or not target.group(1).endswith(MUTATED):
            continue
        lines = set()
        for start, count in HUNK.findall(block):
            lines.update(range(int(start), int(start) + (int(count) if count else 1)))
        if lines:
            changed[target.group(1)] = lines
    return changed


def run_order(file: str) -> tuple[bool, bool, str]:
    """Library code first, the harness after it, the catalogue's data last: a short budget is
    spent on the code users run."""
    return file.startswith("sashimi/harness/catalogue"), file.startswith("sashimi/harness/"), file


def diff_jobs(root: Path, rev: str, per_line: int = 1, under: tuple[str, ...] = ()) -> tuple[list[Job], list[Skipped]]:
    """Generated mutants on the lines changed since `rev` (in the files under any of `under`, if
    given), at most `per_line` distinct ones a line (the first in the operators' order), and the
    lines marked `# mutate: skip`."""
    jobs, skipped = [], []
    changed = {f: lines for f, lines in changed_lines(root, rev).items() if not under or f.startswith(under)}
    for file, lines in sorted(changed.items(), key=lambda item: run_order(item[0])):
        text = (root / file).read_text()
        if file.endswith(".cpp"):
            marked = operators.skip_marks(text, lines)
            skipped += [Skipped(file, line, reason) for line, reason in sorted(marked.items())]
            jobs += _cpp_jobs(file, text, set(lines) - set(marked), per_line, root)
            continue
        by_line, marked = operators.candidates(text, lines)
        skipped += [Skipped(file, line, reason) for line, reason in sorted(marked.items())]
        original, original_code = ast.unparse(ast.parse(text)), _code_key(compile(text, "m", "exec"))
        calls = called_lines(text)
        for line, found in by_line.items():
            seen: set[str] = set()
            for c in found:
                if len(seen) == per_line:
                    break  # mutate: skip continue: every later candidate meets the same test
                new = "" if c.new is None else "\n".join(ast.unparse(n) for n in _as_list(c.new))
                mutated = anchor.splice(text, anchor.Place(file, (c.node,), {}), new)
                normal = ast.unparse(ast.parse(mutated))  # `dim=-1 -> -2` and `1 -> 2` there are one mutant
                if normal in seen or normal == original:
                    continue
                seen.add(normal)
                span = calls.get(_position(c.node)) or range(c.node.lineno, c.node.end_lineno + 1)
                before = ast.get_source_segment(text, c.node) or ast.unparse(c.node)
                change = f"{_short(before)} -> {_short(new) if new else '(removed)'}"
                job_id = f"{file}:{line}:{len(seen)}"
                column, equivalent = c.node.col_offset + 1, _compiles_to(mutated, original_code)
                jobs.append(Job(job_id, file, line, span, c.operator, mutated, "", change, column, None, equivalent))
    return jobs, skipped


def _position(node) -> tuple:
    return type(node).__name__, node.lineno, node.col_offset, node.end_lineno, node.end_col_offset


def called_lines(source: str) -> dict[tuple, range]:
    """Each node of a function's default values and decorators -> the lines of the function's body.
    Those nodes run at import time, which would select every test; their change shows when the
    function is called, so the tests that run its body judge it."""
    found = {}
    for fn in ast.walk(ast.parse(source)):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = range(fn.body[0].lineno, fn.end_lineno + 1)
            for part in [*fn.args.defaults, *filter(None, fn.args.kw_defaults), *fn.decorator_list]:
                found.update((_position(n), body) for n in ast.walk(part) if hasattr(n, "end_lineno"))
    return found


def _as_list(node) -> list:
    return node if isinstance(node, list) else [node]


def _short(source: str, width: int = 60) -> str:
    flat = " ".join(source.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def probe(root: Path, file: str) -> tuple[str, range] | None:
    """The lines of the Python module whose tests judge a mutant of the non-Python `file`."""
    if file not in PROBES or not (root / PROBES[file]).is_file():
        return None
    caller = PROBES[file]
    return caller, range(1, (root / caller).read_text().count("\n") + 2)


def same_bytecode(original: str, mutated: str) -> bool:
    """Trivial compiler equivalence: the mutated module compiles to the original's code objects
    (constants folded, line numbers ignored), so no test can tell them apart."""
    return _compiles_to(mutated, _code_key(compile(original, "m", "exec")))


def _compiles_to(mutated: str, code_key: tuple) -> bool:
    try:
        with warnings.catch_warnings():  # the compiler's SyntaxWarnings on code it does not run
            warnings.simplefilter("ignore")
            return _code_key(compile(mutated, "m", "exec")) == code_key
    except SyntaxError:
        return False


def _code_key(code) -> tuple:
    consts = tuple(_code_key(c) if hasattr(c, "co_code") else (type(c).__name__, repr(c)) for c in code.co_consts)
    return code.co_code, consts, code.co_names, code.co_varnames


def _cpp_jobs(file: str, text: str, lines: set[int], per_line: int, root: Path) -> list[Job]:
    lines_of = text.splitlines(keepends=True)
    caller = probe(root, file)
    jobs = []
    for line, found in operators_cpp.candidates(text, lines).items():
        seen: set[str] = set()
        for m in found:
            if m.text in seen or len(seen) == per_line:
                continue  # mutate: skip break: the same past the limit; no line of ours repeats a text
            seen.add(m.text)
            ending = "\n" if lines_of[line - 1].endswith("\n") else ""
            mutated = "".join(lines_of[: line - 1]) + m.text + ending + "".join(lines_of[line:])
            original = lines_of[line - 1].rstrip("\n")
            start = max(m.column - 1 - 20, 0)  # the change in its context: a lone `* -> /` says little
            change = f"{_short(original[start:].strip())} -> {_short(m.text[start:].strip())}"
            job_id = f"{file}:{line}:{len(seen)}"
            span = range(line, line + 1)
            jobs.append(
                Job(job_id, file, line, span, m.operator, mutated, change=change, column=m.column, probe=caller)
            )
    return jobs

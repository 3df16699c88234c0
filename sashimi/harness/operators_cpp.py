"""Mutation operators for the C++ lines a change touches (sashimi/model/native_step.cpp).

Text operators on the code of one line (comments, strings and preprocessor lines are never
mutated), in the order a line's first mutant is taken: a loop's bound one early (the vector tail
or the last element dropped), a comparison's boundary moved, an arithmetic or compound
assignment operator changed, a constant perturbed (an integer by one, a floating constant by
one part in a thousand: a constant written to a few digits), a statement removed. The file's
style (spaces around binary operators, one statement a line) is what makes text operators exact.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass

COMPARISON = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}
ARITHMETIC = {"+": "-", "-": "+", "*": "/", "/": "*", "+=": "-=", "-=": "+=", "*=": "/=", "/=": "*="}
_BINARY = re.compile(r"(?<= )(<=|>=|==|!=|<|>)(?= )")
_ARITH = re.compile(r"(?<= )(\+=|-=|\*=|/=|\+|-|\*|/)(?= )")
_NUMBER = re.compile(r"(?<![\w.])((?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+)([fFlLuU]*)(?![\w.])")
_LOOP = re.compile(r"^(\s*for \([^;]*; )([^;]*?) (<|<=) ([^;]+?)(;)")
_DECLARATION = re.compile(
    r"^\s*(return|const|static|using|typedef|struct|class|template|auto|int|int64_t|float|double|T|bool)\b"
)
FLOAT_SCALE = 1.001


@dataclass(frozen=True)
class TextMutant:
    """One mutant of one line: the text at `column` (1-based) changed, as the operator says."""

    line: int
    column: int
    operator: str
    text: str  # the whole line, mutated


def _code_end(line: str) -> int:
    """Where the code of a line stops: at a `//` comment outside a string."""
    in_string = False
    for i, ch in enumerate(line):
        if ch == '"' and (i == 0 or line[i - 1] != "\\"):
            in_string = not in_string
        elif not in_string and line.startswith("//", i):
            return i
    return len(line)


def _outside_strings(line: str, end: int) -> list[tuple[int, int]]:
    """The spans of `line[:end]` outside string literals."""
    spans, start, in_string = [], 0, False  # mutate: skip 1: a line's first character is indentation or a name
    for i, ch in enumerate(line[:end]):  # mutate: skip shifted: a quote's neighbours are brackets and commas
        if ch == '"' and (i == 0 or line[i - 1] != "\\"):  # mutate: skip i == 1: line[-1] at 0 is no backslash
            if not in_string:
                spans.append((start, i))
            else:
                start = i + 1
            in_string = not in_string
    if not in_string:
        spans.append((start, end))
    return spans


def _at(line: str, start: int, end: int, new: str, operator: str, number: int) -> TextMutant:
    return TextMutant(number, start + 1, operator, line[:start] + new + line[end:])


def _float(value: str, suffix: str) -> str:
    if float(value) == 0:  # scaled, a zero stays itself: a zero start becomes one instead
        return f"1.0{suffix}"
    return f"{float(value) * FLOAT_SCALE!r}{suffix}"


def line_mutants(line: str, number: int) -> Iterator[TextMutant]:
    """Every mutant of one line of C++, in the order the first is taken."""
    stripped = line.strip()
    if not stripped or stripped.startswith(("#", "//", "/*", "*")):
        return
    end = _code_end(line)
    spans = _outside_strings(line, end)
    if loop := _LOOP.match(line[:end]):
        start, stop = loop.start(4), loop.end(4)
        yield _at(line, start, stop, f"{loop.group(4)} - 1", "loop: bound one early", number)
    for pattern, table, family in ((_BINARY, COMPARISON, "comparison"), (_ARITH, ARITHMETIC, "arithmetic")):
        for a, b in spans:
            for m in pattern.finditer(line, a, b):
                old = m.group(1)
                yield _at(line, m.start(1), m.end(1), table[old], f"{family}: {old} -> {table[old]}", number)
    for a, b in spans:
        for m in _NUMBER.finditer(line, a, b):
            value, suffix = m.group(1), m.group(2)
            is_float = any(c in value for c in ".eE")
            new = _float(value, suffix) if is_float else f"{int(value) + 1}{suffix}"
            yield _at(line, m.start(), m.end(), new, f"constant: {m.group(0)} -> {new}", number)
    yield from _removal(line, end, number)


def _removal(line: str, end: int, number: int) -> Iterator[TextMutant]:
    """A statement removed: a whole-line statement, or the body of a one-line for / if."""
    code = line[:end].rstrip()
    if not code.endswith(";") or _DECLARATION.match(code):
        return
    head = re.match(r"^\s*(for|if|while) \(", code)
    if not head:
        start = len(code) - len(code.lstrip())
        yield _at(line, start, len(code), ";", "statement: removed", number)
        return
    depth = 0
    for i in range(head.end() - 1, len(code)):
        depth += {"(": 1, ")": -1}.get(code[i], 0)  # mutate: skip -=: the sign flips, 0 at the same bracket
        if depth == 0:
            body = code[i + 1 :].strip()  # mutate: skip i + 2: a space follows the bracket in our code
            if body and body != ";" and not body.startswith("{"):
                yield _at(line, i + 2, len(code), ";", f"statement: {head.group(1)} body removed", number)
            return


def candidates(source: str, lines: set[int]) -> dict[int, list[TextMutant]]:
    """The mutants of each of `lines` (outside block comments), in the order the first is taken."""
    found: dict[int, list[TextMutant]] = {}
    in_comment = False
    for number, line in enumerate(source.splitlines(), 1):
        if in_comment or ("/*" in line and "*/" not in line):
            in_comment = "*/" not in line
            continue
        if number in lines:
            found[number] = list(line_mutants(line, number))
    return {n: m for n, m in found.items() if m}

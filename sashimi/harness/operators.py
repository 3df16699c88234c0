"""Mutation operators for the Python lines a change touches.

Generic: arithmetic, comparison and augmented-assignment operators, constants off by one or
scaled, boolean flips, unary minus removed, `range` stopping one early, a keyword argument
dropped or its string mode changed, a return value replaced by None, an exception handler, a
`raise` or a decorator removed, `break` and `continue` swapped, removed statements or calls,
argument order. Numerical ones are in `operators_numerical`. Each operator gives the replacement
node (None deletes a statement); `sashimi.harness.anchor.splice` writes it into the text.
Strings, docstrings and annotations are never mutated (a message or a shape annotation is not a
bug the numerics can show), and arid lines (a call that only logs or reports progress) are left
alone: a mutant there is noise a reviewer would not act on.
"""

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass

from sashimi.harness.operator_tables import (
    ARID,
    ARITHMETIC,
    AUGMENTED,
    COMPARISON,
    EPSILON,
    MODES,
    ORDER,
    PLUMBING,
    SYMBOL,
)
from sashimi.harness.operators_numerical import numerical, with_fields

SKIP = re.compile(r"(?:#|//)\s*mutate:\s*skip\b\s*(.*)")  # Python's comment, or C++'s
# a decorator that changes nothing: `@deco` -> `@(lambda f: f)`
IDENTITY = ast.Lambda(  # mutate: skip its fields swapped, ast.unparse still writes `lambda f: f`
    ast.arguments([], [ast.arg("f")], None, [], [], None, []),  # mutate: skip f positional-only: the same
    ast.Name("f", ast.Load()),
)


@dataclass(frozen=True)
class Candidate:
    """One mutant: `node` (a statement or an expression) replaced by `new` (statements, or None:
    deleted)."""

    line: int
    operator: str
    node: ast.AST
    new: ast.AST | list | None

    @property
    def family(self) -> str:
        return self.operator.split(":")[0]


def _generic(node: ast.AST) -> Iterator[tuple[str, ast.AST | None]]:
    if isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC:
        new = ARITHMETIC[type(node.op)]
        yield f"arithmetic: {SYMBOL[type(node.op)]} -> {SYMBOL[new]}", with_fields(node, op=new())
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in COMPARISON:
        new = COMPARISON[type(node.ops[0])]
        yield f"comparison: {SYMBOL[type(node.ops[0])]} -> {SYMBOL[new]}", with_fields(node, ops=[new()])
    if isinstance(node, ast.BoolOp):
        new = ast.Or if isinstance(node.op, ast.And) else ast.And
        yield f"boolean: {SYMBOL[type(node.op)]} -> {SYMBOL[new]}", with_fields(node, op=new())
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "boolean: not dropped", node.operand
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and not isinstance(node.operand, ast.Constant):
        yield "unary: minus removed", node.operand  # -1 is a constant: the constant operator moves it
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        yield f"boolean: {node.value} -> {not node.value}", ast.Constant(not node.value)
    elif isinstance(node, ast.Constant) and isinstance(node.value, int):
        yield f"constant: {node.value} -> {node.value + 1}", ast.Constant(node.value + 1)
    elif isinstance(node, ast.Constant) and isinstance(node.value, float) and not 0 < abs(node.value) < EPSILON:
        new = node.value * 2 if node.value else 1.0
        yield f"constant: {node.value!r} -> {new!r}", ast.Constant(new)
    if isinstance(node, ast.Call):
        yield from _call(node)


def _call(node: ast.Call) -> Iterator[tuple[str, ast.AST | None]]:
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if name == "range" and node.args and not node.keywords:
        stop = 0 if len(node.args) == 1 else 1
        args = list(node.args)
        args[stop] = ast.BinOp(args[stop], ast.Sub(), ast.Constant(1))
        yield "range: stop one early", with_fields(node, args=args)
    for i, kw in enumerate(node.keywords):
        if kw.arg is None:
            continue
        if isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str) and kw.value.value in MODES:
            keywords = list(node.keywords)
            keywords[i] = ast.keyword(kw.arg, ast.Constant(MODES[kw.value.value]))
            yield (
                f"string: {kw.arg}={kw.value.value!r} -> {MODES[kw.value.value]!r}",
                with_fields(node, keywords=keywords),
            )
        yield f"keyword: {kw.arg}= dropped", with_fields(node, keywords=node.keywords[:i] + node.keywords[i + 1 :])
    positional = [a for a in node.args if not isinstance(a, ast.Starred)]
    if len(positional) == len(node.args) >= 2 and ast.dump(node.args[0]) != ast.dump(node.args[1]):
        yield "argument: first two swapped", with_fields(node, args=[node.args[1], node.args[0], *node.args[2:]])
    plumbing = name in PLUMBING
    if len(node.args) == 1 and not node.keywords and not isinstance(node.args[0], ast.Starred) and not plumbing:
        yield f"call: {ast.unparse(node.func)}(x) -> x", node.args[0]


def _statement(node: ast.stmt) -> Iterator[tuple[str, ast.AST, ast.AST | None]]:
    """(operator, the node replaced, its replacement): a condition is negated in place."""
    if isinstance(node, ast.If | ast.While):
        yield "boolean: condition negated", node.test, ast.UnaryOp(ast.Not(), node.test)
    if isinstance(node, ast.AugAssign) and type(node.op) in AUGMENTED:
        new = AUGMENTED[type(node.op)]
        yield f"arithmetic: {SYMBOL[type(node.op)]}= -> {SYMBOL[new]}=", node, with_fields(node, op=new())
    if isinstance(node, ast.Return) and node.value is not None and not _is_none(node.value):
        yield "return: value -> None", node, ast.Return(ast.Constant(None))
    if isinstance(node, ast.Break | ast.Continue):
        swapped = ast.Continue() if isinstance(node, ast.Break) else ast.Break()
        yield f"loop: {type(node).__name__.lower()} -> {type(swapped).__name__.lower()}", node, swapped
    if isinstance(node, ast.Raise):
        yield "exception: raise removed", node, None
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call | ast.Await):
        yield "statement: call removed", node, None
    if isinstance(node, ast.Assign | ast.AugAssign) and not _defines_new_name(node):
        yield "statement: assignment removed", node, None


def _handlers(tree: ast.AST) -> Iterator[tuple[int, str, ast.Try, list | ast.Try]]:
    """Each `except` line: the try statement without that handler (its body alone when it was the
    last handler and nothing else remains), so the exception propagates."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        for i, handler in enumerate(node.handlers):
            rest = node.handlers[:i] + node.handlers[i + 1 :]
            new = with_fields(node, handlers=rest) if rest or node.finalbody else node.body + node.orelse
            yield handler.lineno, "exception: handler removed", node, new


def _decorators(tree: ast.AST) -> Iterator[tuple[int, str, ast.AST, ast.AST]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for deco in node.decorator_list:
                yield deco.lineno, f"decorator: @{ast.unparse(deco)} removed", deco, IDENTITY


def _is_none(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _defines_new_name(node: ast.stmt) -> bool:
    """Removing `x = ...` where x is new only raises NameError: not a realistic bug, skip it."""
    return isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) for t in node.targets)


def arid(node: ast.AST) -> bool:
    """A statement that only reports: `log(...)`, `print(...)`, `bar.set_postfix(...)`."""
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return False
    func = node.value.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    return name in ARID


def _mutable_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except strings, docstrings, annotations, decorators, import lines and arid lines."""
    skip_fields = {"annotation", "returns", "decorator_list", "type_comment"}

    def visit(node: ast.AST) -> Iterator[ast.AST]:
        if isinstance(node, ast.Import | ast.ImportFrom | ast.JoinedStr) or (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        ):
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes) or arid(node):
            return
        yield node
        for field, value in ast.iter_fields(node):
            if field in skip_fields:
                continue
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.AST):
                    yield from visit(child)

    yield from visit(tree)


def skip_marks(source: str, lines: set[int]) -> dict[int, str]:
    """The lines marked `# mutate: skip <reason>`, with their reasons."""
    text_lines = source.splitlines()
    return {
        n: (m.group(1).strip() or "no reason given")
        for n in lines
        if n <= len(text_lines) and (m := SKIP.search(text_lines[n - 1]))
    }


def statement_marks(tree: ast.AST, marks: dict[int, str], lines: set[int]) -> dict[int, str]:
    """A mark on the last line of a simple statement covers all its lines (a formatter puts the
    comment after the closing bracket); returned for `lines` only."""
    spread = dict(marks)
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and not hasattr(node, "body") and node.end_lineno in marks:
            spread.update({n: marks[node.end_lineno] for n in range(node.lineno, node.end_lineno)})
    return {n: r for n, r in spread.items() if n in lines}


def candidates(source: str, lines: set[int]) -> tuple[dict[int, list[Candidate]], dict[int, str]]:
    """Mutants of the nodes that start on `lines`, per line with the numerical operators first,
    and the lines marked `# mutate: skip <reason>` with their reasons."""
    tree = ast.parse(source)
    skipped = statement_marks(tree, skip_marks(source, set(range(1, source.count("\n") + 2))), lines)
    found: dict[int, list[Candidate]] = {}

    def add(line: int, op: str, target: ast.AST, new: ast.AST | list | None) -> None:
        if line in lines and line not in skipped:
            found.setdefault(line, []).append(Candidate(line, op, target, new))

    for node in _mutable_nodes(tree):
        line = getattr(node, "lineno", None)
        if line not in lines or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        ops = (
            _statement(node)
            if isinstance(node, ast.stmt)
            else [(op, node, new) for op, new in [*numerical(node), *_generic(node)]]
        )
        for op, target, new in ops:
            add(line, op, target, new)
    for line, op, target, new in [*_handlers(tree), *_decorators(tree)]:
        add(line, op, target, new)
    return {line: sorted(found[line], key=lambda c: ORDER.index(c.family)) for line in sorted(found)}, skipped

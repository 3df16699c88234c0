"""Mutation operators for the lines a change touches: generic ones and ones for numerical code.

Generic: arithmetic and comparison operators, constants off by one or scaled, boolean flips,
removed statements or calls, argument order. Numerical: a conjugate dropped or added, float64
cast to float32, a slice shifted by one, a reduction or transpose axis moved, exp / softplus /
log swapped, a mask or clamp dropped. Each operator gives the replacement node (None deletes a
statement); `sashimi.harness.anchor.splice` writes it into the text. Strings, docstrings and
annotations are never mutated (changing a message or a shape annotation is not a bug the
numerics can show).
"""

import ast
import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass

from sashimi.harness.operator_tables import (
    ARITHMETIC,
    AXIS_FIRST,
    CLAMPS,
    COMPARISON,
    DTYPES,
    EPSILON,
    ORDER,
    PLUMBING,
    REDUCTIONS,
    SYMBOL,
)

SKIP = re.compile(r"#\s*mutate:\s*skip\b\s*(.*)")


@dataclass(frozen=True)
class Candidate:
    """One mutant: `node` (a statement or an expression) replaced by `new` (None: deleted)."""

    line: int
    operator: str
    node: ast.AST
    new: ast.AST | None

    @property
    def family(self) -> str:
        return self.operator.split(":")[0]


def _with(node: ast.AST, **fields) -> ast.AST:
    new = copy.deepcopy(node)
    for key, value in fields.items():
        setattr(new, key, value)
    return new


def _attr_call(node: ast.AST) -> tuple[str, ast.AST] | None:
    """('name', receiver) of a call `receiver.name(...)`, else None."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr, node.func.value
    return None


def _numerical(node: ast.AST) -> Iterator[tuple[str, ast.AST | None]]:
    call = _attr_call(node)
    name, receiver = call if call else (None, None)
    if name == "conj":  # x.conj() or torch.conj(x)
        yield "conjugate: dropped", receiver if not node.args else node.args[0]
    if isinstance(node, ast.Attribute) and node.attr in ("mT", "mH"):
        yield (
            f"conjugate: {'added' if node.attr == 'mT' else 'dropped'} (.{node.attr} -> "
            f".{'mH' if node.attr == 'mT' else 'mT'})",
            _with(node, attr="mH" if node.attr == "mT" else "mT"),
        )
    if isinstance(node, ast.Attribute) and node.attr in DTYPES and not isinstance(node.ctx, ast.Store):
        yield f"dtype: {node.attr} -> {DTYPES[node.attr]}", _with(node, attr=DTYPES[node.attr])
    if isinstance(node, ast.Subscript):
        for where, part in _slices(node.slice):
            yield f"slice: {where} shifted by one", _with(node, slice=part)
    called = name or (node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else None)
    if isinstance(node, ast.Call) and called in REDUCTIONS:
        yield from _axis(node, called in AXIS_FIRST)
    if name in ("exp", "softplus", "log", "log1p"):
        yield from _function(node, name, receiver)
    if name in CLAMPS:
        yield (
            f"mask: .{name}(...) dropped",
            node.args[0]
            if isinstance(receiver, ast.Name) and receiver.id in ("torch", "np", "numpy") and node.args
            else receiver,
        )
    if name == "where" and len(node.args) == 3:
        yield "mask: where(c, a, b) -> a", node.args[1]


def _slices(index: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    """Each slice of an index with its bounds moved up by one, as a new index."""
    parts = index.elts if isinstance(index, ast.Tuple) else [index]
    for i, part in enumerate(parts):
        if not isinstance(part, ast.Slice) or (part.lower is None and part.upper is None):
            continue
        moved = ast.Slice(
            _plus_one(part.lower, lower=True), _plus_one(part.upper, lower=False), copy.deepcopy(part.step)
        )
        new = [copy.deepcopy(p) for p in parts]
        new[i] = moved
        yield f"index {i} [{ast.unparse(part)}]", ast.Tuple(new, ast.Load()) if isinstance(index, ast.Tuple) else moved


def _plus_one(bound: ast.AST | None, lower: bool) -> ast.AST | None:
    """A slice bound one sample later: literals folded (an upper -1 becomes the end, None), a
    lower -1 kept (one later is past the end), an absent lower becomes 1."""
    if bound is None:
        return ast.Constant(1) if lower else None
    try:
        value = ast.literal_eval(bound)
    except ValueError:
        return ast.BinOp(copy.deepcopy(bound), ast.Add(), ast.Constant(1))
    if not isinstance(value, int) or value == -1 and lower:
        return copy.deepcopy(bound)
    return None if value == -1 else ast.Constant(value + 1)


def _axis(node: ast.Call, positional: bool) -> Iterator[tuple[str, ast.AST]]:
    def moved(value: ast.AST) -> ast.AST | None:
        v = ast.literal_eval(value) if isinstance(value, ast.Constant | ast.UnaryOp) else None
        return ast.Constant(v + 1 if v >= 0 else v - 1) if isinstance(v, int) and not isinstance(v, bool) else None

    for i, kw in enumerate(node.keywords):
        if kw.arg in ("dim", "axis", "dim0", "dim1") and (new := moved(kw.value)) is not None:
            keywords = [copy.deepcopy(k) for k in node.keywords]
            keywords[i].value = new
            yield f"axis: {kw.arg}={ast.unparse(kw.value)} -> {ast.unparse(new)}", _with(node, keywords=keywords)
    for i, arg in enumerate(node.args if positional else []):
        if (new := moved(arg)) is not None:
            args = [copy.deepcopy(a) for a in node.args]
            args[i] = new
            yield f"axis: argument {i} {ast.unparse(arg)} -> {ast.unparse(new)}", _with(node, args=args)
            return


def _function(node: ast.Call, name: str, receiver: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    module = isinstance(receiver, ast.Name) and receiver.id in ("torch", "np", "numpy", "math", "F")
    if module and not node.args:
        return
    x = node.args[0] if module else receiver

    def call(method: str, arg: ast.AST) -> ast.AST:
        return ast.Call(ast.Attribute(copy.deepcopy(arg), method, ast.Load()), [], [])

    if name == "exp":  # softplus(x) = log1p(exp(x)), written with what x already has
        yield (
            "function: exp -> softplus",
            ast.Call(ast.Attribute(receiver, "log1p", ast.Load()), [node], []) if module else call("log1p", node),
        )
    elif name == "softplus":
        yield "function: softplus -> exp", call("exp", x)
    else:
        other = "log1p" if name == "log" else "log"
        yield f"function: {name} -> {other}", _with(node, func=_with(node.func, attr=other))


def _generic(node: ast.AST) -> Iterator[tuple[str, ast.AST | None]]:
    if isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC:
        new = ARITHMETIC[type(node.op)]
        yield f"arithmetic: {SYMBOL[type(node.op)]} -> {SYMBOL[new]}", _with(node, op=new())
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in COMPARISON:
        new = COMPARISON[type(node.ops[0])]
        yield f"comparison: {SYMBOL[type(node.ops[0])]} -> {SYMBOL[new]}", _with(node, ops=[new()])
    if isinstance(node, ast.BoolOp):
        new = ast.Or if isinstance(node.op, ast.And) else ast.And
        yield f"boolean: {SYMBOL[type(node.op)]} -> {SYMBOL[new]}", _with(node, op=new())
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "boolean: not dropped", node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        yield f"boolean: {node.value} -> {not node.value}", ast.Constant(not node.value)
    elif isinstance(node, ast.Constant) and isinstance(node.value, int):
        yield f"constant: {node.value} -> {node.value + 1}", ast.Constant(node.value + 1)
    elif isinstance(node, ast.Constant) and isinstance(node.value, float) and not 0 < abs(node.value) < EPSILON:
        new = node.value * 2 if node.value else 1.0
        yield f"constant: {node.value!r} -> {new!r}", ast.Constant(new)
    if isinstance(node, ast.Call):
        positional = [a for a in node.args if not isinstance(a, ast.Starred)]
        if len(positional) == len(node.args) >= 2 and ast.dump(node.args[0]) != ast.dump(node.args[1]):
            yield "argument: first two swapped", _with(node, args=[node.args[1], node.args[0], *node.args[2:]])
        plumbing = isinstance(node.func, ast.Name) and node.func.id in PLUMBING
        if len(node.args) == 1 and not node.keywords and not isinstance(node.args[0], ast.Starred) and not plumbing:
            yield f"call: {ast.unparse(node.func)}(x) -> x", node.args[0]


def _statement(node: ast.stmt) -> Iterator[tuple[str, ast.AST, ast.AST | None]]:
    """(operator, the node replaced, its replacement): a condition is negated in place."""
    if isinstance(node, ast.If | ast.While):
        yield "boolean: condition negated", node.test, ast.UnaryOp(ast.Not(), node.test)
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call | ast.Await):
        yield "statement: call removed", node, None
    if isinstance(node, ast.Assign | ast.AugAssign) and not _defines_new_name(node):
        yield "statement: assignment removed", node, None


def _defines_new_name(node: ast.stmt) -> bool:
    """Removing `x = ...` where x is new only raises NameError: not a realistic bug, skip it."""
    return isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) for t in node.targets)


def _mutable_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except strings, docstrings, annotations, decorators and import lines."""
    skip_fields = {"annotation", "returns", "decorator_list", "type_comment"}

    def visit(node: ast.AST) -> Iterator[ast.AST]:
        if isinstance(node, ast.Import | ast.ImportFrom | ast.JoinedStr) or (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        ):
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            return
        yield node
        for field, value in ast.iter_fields(node):
            if field in skip_fields:
                continue
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.AST):
                    yield from visit(child)

    yield from visit(tree)


def candidates(source: str, lines: set[int]) -> tuple[dict[int, list[Candidate]], dict[int, str]]:
    """Mutants of the nodes that start on `lines`, per line with the numerical operators first,
    and the lines marked `# mutate: skip <reason>` with their reasons."""
    tree = ast.parse(source)
    text_lines = source.splitlines()
    skipped = {
        n: (m.group(1).strip() or "no reason given")
        for n in lines
        if n <= len(text_lines) and (m := SKIP.search(text_lines[n - 1]))
    }
    found: dict[int, list[Candidate]] = {}
    for node in _mutable_nodes(tree):
        line = getattr(node, "lineno", None)
        if line not in lines or line in skipped or isinstance(node, ast.FunctionDef | ast.ClassDef):
            continue
        ops = (
            _statement(node)
            if isinstance(node, ast.stmt)
            else [(op, node, new) for op, new in [*_numerical(node), *_generic(node)]]
        )
        found.setdefault(line, []).extend(Candidate(line, op, target, new) for op, target, new in ops)
    return {line: sorted(found[line], key=lambda c: ORDER.index(c.family)) for line in sorted(found)}, skipped

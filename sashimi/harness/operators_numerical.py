"""Numerical mutation operators: a conjugate dropped or added, float64 cast to float32, a slice
shifted by one, a reduction or transpose axis moved, exp / softplus / log swapped, a mask or
clamp dropped. Each yields (operator, replacement node); `sashimi.harness.operators` collects them."""

import ast
import copy
from collections.abc import Iterator

from sashimi.harness.operator_tables import AXIS_FIRST, CLAMPS, DTYPES, MATH_MODULES, REDUCTIONS


def with_fields(node: ast.AST, **fields) -> ast.AST:
    new = copy.deepcopy(node)
    for key, value in fields.items():
        setattr(new, key, value)
    return new


def _attr_call(node: ast.AST) -> tuple[str, ast.AST] | None:
    """('name', receiver) of a call `receiver.name(...)`, else None."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr, node.func.value
    return None


def numerical(node: ast.AST) -> Iterator[tuple[str, ast.AST | None]]:
    call = _attr_call(node)
    name, receiver = call if call else (None, None)
    if name == "conj":  # x.conj() or torch.conj(x)
        yield "conjugate: dropped", receiver if not node.args else node.args[0]
    if isinstance(node, ast.Attribute) and node.attr in ("mT", "mH"):
        yield (
            f"conjugate: {'added' if node.attr == 'mT' else 'dropped'} (.{node.attr} -> "
            f".{'mH' if node.attr == 'mT' else 'mT'})",
            with_fields(node, attr="mH" if node.attr == "mT" else "mT"),
        )
    if isinstance(node, ast.Attribute) and node.attr in DTYPES and not isinstance(node.ctx, ast.Store):
        yield f"dtype: {node.attr} -> {DTYPES[node.attr]}", with_fields(node, attr=DTYPES[node.attr])
    if isinstance(node, ast.Subscript):
        for where, part in _slices(node.slice):
            yield f"slice: {where} shifted by one", with_fields(node, slice=part)
    # only `x.sum(...)` / `torch.sum(...)`: the builtins max(x, 1), sum(xs) have no axis
    if name in REDUCTIONS:
        yield from _axis(node, name in AXIS_FIRST)
    if name in ("exp", "softplus", "log", "log1p") and _math(node, receiver):
        yield from _function(node, name, receiver)
    if name in CLAMPS:
        yield (
            f"mask: .{name}(...) dropped",
            node.args[0] if isinstance(receiver, ast.Name) and receiver.id in MATH_MODULES and node.args else receiver,
        )
    if name == "where" and len(node.args) == 3:
        yield "mask: where(c, a, b) -> a", node.args[1]


def _math(node: ast.Call, receiver: ast.AST) -> bool:
    """`torch.log(x)` or a tensor's `x.log()`; not a logger's `procs.log("message")`."""
    return (isinstance(receiver, ast.Name) and receiver.id in MATH_MODULES) or not (node.args or node.keywords)


def _slices(index: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    """Each slice of an index with its bounds moved up by one, as a new index."""
    parts = index.elts if isinstance(index, ast.Tuple) else [index]
    for i, part in enumerate(parts):
        if not isinstance(part, ast.Slice) or (part.lower is None and part.upper is None):
            continue
        moved = ast.Slice(
            _plus_one(part.lower, lower=True), _plus_one(part.upper, lower=False), copy.deepcopy(part.step)
        )
        new = [copy.deepcopy(p) for p in parts]  # mutate: skip no copy: the parts are only read
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
            yield f"axis: {kw.arg}={ast.unparse(kw.value)} -> {ast.unparse(new)}", with_fields(node, keywords=keywords)
    for i, arg in enumerate(node.args if positional else []):
        if (new := moved(arg)) is not None:
            args = [copy.deepcopy(a) for a in node.args]  # mutate: skip no copy: the arguments are only read
            args[i] = new
            yield f"axis: argument {i} {ast.unparse(arg)} -> {ast.unparse(new)}", with_fields(node, args=args)
            return


def _function(node: ast.Call, name: str, receiver: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    module = isinstance(receiver, ast.Name) and receiver.id in MATH_MODULES
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
        yield f"function: {name} -> {other}", with_fields(node, func=with_fields(node.func, attr=other))

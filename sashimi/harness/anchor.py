"""Code anchors for mutants: a qualified name and a syntax-tree pattern, not a piece of text.

A pattern is Python source (an expression, or one or more statements) matched against the
syntax tree of the named function, class or module, up to a consistent renaming of variables:
reformatting, renamed locals and a function moved to another module keep it valid. The
mutated file is the original text with only the matched span replaced, so everything else in
it (comments, layout, line lengths) is untouched.
"""

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

ROOTS = ("sashimi", "reference")  # where anchors are looked up when a name moved


class Stale(Exception):
    """The anchor no longer names exactly one place in the code."""


@dataclass(frozen=True)
class Place:
    """Where a pattern matched: the file, the nodes, and the renaming that made them equal."""

    file: str
    nodes: tuple[ast.AST, ...]
    renaming: dict[str, str]

    @property
    def line(self) -> int:
        return self.nodes[0].lineno


def parse_pattern(source: str, statements: bool) -> list[ast.AST]:
    """An expression alone gives [expr] unless `statements`; otherwise the statements (an empty
    source gives [], a deletion)."""
    if not statements:
        try:
            return [ast.parse(source.strip(), mode="eval").body]
        except SyntaxError:
            pass
    return list(ast.parse(source.strip()).body)


def qualified_defs(tree: ast.Module) -> dict[str, ast.AST]:
    """Every function and class by dotted qualified name ("UpPool.forward"); "" is the module."""
    found: dict[str, ast.AST] = {"": tree}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + child.name
                found.setdefault(name, child)
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def same(pattern, node, renaming):  # unannotated on purpose: the hot path of every lookup, kept free of runtime checks
    """Structural equality, Name ids compared through one bijective renaming (extended in place)."""
    if isinstance(pattern, list) or isinstance(node, list):
        return (
            isinstance(pattern, list)
            and isinstance(node, list)
            and len(pattern) == len(node)
            and all(same(p, n, renaming) for p, n in zip(pattern, node))
        )
    if not isinstance(pattern, ast.AST) or not isinstance(node, ast.AST):
        return type(pattern) is type(node) and pattern == node
    if type(pattern) is not type(node):
        return False
    if isinstance(pattern, ast.Name):
        mapped = renaming.get(pattern.id)
        if mapped is None:
            if node.id in renaming.values():
                return False
            renaming[pattern.id] = node.id
            return True
        return mapped == node.id
    return all(same(getattr(pattern, f), getattr(node, f, None), renaming) for f in pattern._fields if f != "ctx")


def candidates(scope: ast.AST, pattern: list[ast.AST]) -> list[tuple[tuple[ast.AST, ...], dict[str, str]]]:
    """Every place in `scope` where the pattern matches: a node, or a run of statements."""
    found = []
    for node in ast.walk(scope):
        if len(pattern) == 1 and not isinstance(pattern[0], ast.stmt):
            renaming: dict[str, str] = {}
            if type(node) is type(pattern[0]) and same(pattern[0], node, renaming):
                found.append(((node,), renaming))
            continue
        for field in ("body", "orelse", "finalbody", "handlers"):
            body = getattr(node, field, None)
            if not isinstance(body, list):
                continue  # mutate: skip break: no node has a list in a later field without one in body
            for i in range(len(body) - len(pattern) + 1):
                renaming = {}
                if same(pattern, body[i : i + len(pattern)], renaming):
                    found.append((tuple(body[i : i + len(pattern)]), renaming))
    return found


def locate(root: Path, hint: str, target: str, pattern_source: str, statements: bool = False) -> Place:
    """The one place `pattern_source` matches inside `target`: in the file `hint` if it defines
    `target`, else in the one file under ROOTS that does. Raises Stale naming what is wrong."""
    pattern = parse_pattern(pattern_source, statements)
    if not pattern:
        raise Stale("empty pattern")
    files = [hint] if (root / hint).is_file() else []
    scope = _scope(root, hint, target) if files else None
    if scope is None:
        owners = [f for f in _python_files(root) if _scope(root, f, target) is not None]
        if len(owners) != 1:
            raise Stale(
                f"{target or 'module'} is defined in {len(owners)} files under {'/'.join(ROOTS)}, not in {hint}"
            )
        hint, scope = owners[0], _scope(root, owners[0], target)
    found = candidates(scope, pattern)
    exact = [c for c in found if all(k == v for k, v in c[1].items())]
    # a renaming of one match must not hide the exact one
    if len(found) > 1 and len(exact) == 1:  # mutate: skip >= 1: one match that is exact is itself
        found = exact
    if len(found) != 1:
        raise Stale(f"the pattern matches {len(found)} times in {target or 'the module'} of {hint}, not once")
    nodes, renaming = found[0]
    return Place(hint, nodes, renaming)


def _python_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix() for r in ROOTS if (root / r).is_dir() for p in (root / r).rglob("*.py")
    )


def _scope(root: Path, file: str, target: str) -> ast.AST | None:
    path = root / file
    if not path.is_file():
        return None
    stat = path.stat()
    return _definitions(str(path), stat.st_mtime_ns, stat.st_size).get(target)


@functools.lru_cache(maxsize=256)  # mutate: skip a cache: without it the same definitions, parsed again
def _definitions(path: str, mtime_ns: int, size: int) -> dict[str, ast.AST]:
    """A file's qualified definitions, parsed once while the file is unchanged."""
    try:
        return qualified_defs(ast.parse(Path(path).read_text()))
    except SyntaxError:
        return {}


class _Rename(ast.NodeTransformer):
    def __init__(self, renaming: dict[str, str]):
        self.renaming = renaming

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.copy_location(ast.Name(self.renaming.get(node.id, node.id), node.ctx), node)


def render(replacement: str, renaming: dict[str, str], statements: bool, slice_: bool = False) -> list[ast.AST]:
    """The replacement's nodes with the pattern's names turned into the matched code's names."""
    nodes = (
        [ast.parse(f"_[{replacement}]", mode="eval").body.slice] if slice_ else parse_pattern(replacement, statements)
    )
    return [_Rename(renaming).visit(node) for node in nodes]


def splice(text: str, place: Place, replacement: str) -> str:
    """`text` with the matched span replaced by `replacement` (renamed like the match)."""
    first, last = place.nodes[0], place.nodes[-1]
    nodes = render(replacement, place.renaming, isinstance(first, ast.stmt), isinstance(first, ast.Slice))
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    start = offsets[first.lineno - 1] + len(lines[first.lineno - 1].encode()[: first.col_offset].decode())
    end = offsets[last.end_lineno - 1] + len(lines[last.end_lineno - 1].encode()[: last.end_col_offset].decode())
    if isinstance(first, ast.stmt):
        indent = "\n" + " " * first.col_offset
        new = indent.join(ast.unparse(n).replace("\n", indent) for n in nodes) if nodes else "pass"
    else:
        source = ast.unparse(nodes[0]) if nodes else "None"
        new = source if isinstance(first, ast.Slice) else f"({source})"
    return text[:start] + new + text[end:]

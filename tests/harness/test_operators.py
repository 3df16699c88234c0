"""The mutation operators compute what they name: each mutant executed beside the original on a
small function (Python), or compared as text with the line it must give (C++); arid lines and
builtins that only look like math are left alone."""

import ast
import textwrap

import pytest

from sashimi.harness import anchor, operators, operators_cpp, plan


def mutate(source: str, operator: str) -> str:
    """The source with the one candidate named `operator` applied."""
    found = [c for line in operators.candidates(source, set(range(1, 100)))[0].values() for c in line]
    chosen = [c for c in found if c.operator == operator]
    assert len(chosen) == 1, [c.operator for c in found]
    c = chosen[0]
    new = "" if c.new is None else "\n".join(ast.unparse(n) for n in (c.new if isinstance(c.new, list) else [c.new]))
    return anchor.splice(source, anchor.Place("m.py", (c.node,), {}), new)


def call(source: str, expression: str):
    scope: dict = {}
    exec(source, scope)
    try:
        return eval(expression, scope)
    except Exception as e:  # the mutant's exception is its behaviour
        return type(e).__name__


CASES = [
    ("def f(x):\n    return -x\n", "unary: minus removed", "f(3)", -3, 3),
    ("def f(x):\n    return x + 1\n", "return: value -> None", "f(3)", 4, None),
    ("def f(n):\n    return sum(i for i in range(n))\n", "range: stop one early", "f(4)", 6, 3),
    ("def f(a, n):\n    return [a[i] for i in range(1, n)]\n", "range: stop one early", "f([5, 6, 7], 3)", [6, 7], [6]),
    (
        "def f(x):\n    try:\n        return 1 / x\n    except ZeroDivisionError:\n        return 0.0\n",
        "exception: handler removed",
        "f(0)",
        0.0,
        "ZeroDivisionError",
    ),
    (
        "def f(x):\n    if x < 0:\n        raise ValueError(x)\n    return x\n",
        "exception: raise removed",
        "f(-1)",
        "ValueError",
        -1,
    ),
    (
        "import functools\n\n\n@functools.lru_cache\ndef f(x):\n    return []\n",
        "decorator: @functools.lru_cache removed",
        "f(1) is f(1)",
        True,
        False,
    ),
    (
        "def f(*a, **k):\n    return k\n\n\ndef g():\n    return f(1, scale=2)\n",
        "keyword: scale= dropped",
        "g()",
        {"scale": 2},
        {},
    ),
    (
        "def f(x, reduction):\n    return sum(x) if reduction == 'sum' else sum(x) / len(x)\n\n\n"
        "def g():\n    return f([1, 3], reduction='sum')\n",
        "string: reduction='sum' -> 'mean'",
        "g()",
        4,
        2.0,
    ),
    ("def f(x):\n    t = 1\n    t += x\n    return t\n", "arithmetic: += -> -=", "f(3)", 4, -2),
    ("def f(a, b):\n    return a and b\n", "boolean: and -> or", "f(1, 0)", 0, 1),
    ("def f():\n    return True\n", "boolean: True -> False", "f()", True, False),
    ("def f(x):\n    if x > 0:\n        return 1\n    return 0\n", "boolean: condition negated", "f(1)", 1, 0),
    (
        "def f(xs):\n    for x in xs:\n        return x\n    raise ValueError\n",
        "return: value -> None",
        "f([1, 2])",
        1,
        None,  # returned at once, as the original: not fallen through to the raise
    ),
    (
        "def f(a, b, c):\n    return (a, b, c)\n\n\ndef g():\n    return f(1, 2, 3)\n",
        "argument: first two swapped",
        "g()",
        (1, 2, 3),
        (2, 1, 3),
    ),
    ("def f(x):\n    return x * 0.25\n", "constant: 0.25 -> 0.5", "f(4)", 1.0, 2.0),
    ("def f(x):\n    return x + 0.0\n", "constant: 0.0 -> 1.0", "f(4)", 4.0, 5.0),
    (
        "def f(**k):\n    return k\n\n\ndef g(d):\n    return f(**d, a=1, b=2)\n",
        "keyword: b= dropped",
        "g({'c': 3})",
        {"c": 3, "a": 1, "b": 2},
        {"c": 3, "a": 1},
    ),
    ("def f(a, b):\n    return a or b\n", "boolean: or -> and", "f(1, 0)", 1, 0),
    (
        "def f(xs):\n    out = []\n    for x in xs:\n        if x < 0:\n            break\n"
        "        out.append(x)\n    return out\n",
        "loop: break -> continue",
        "f([1, -1, 2])",
        [1],
        [1, 2],
    ),
]


@pytest.mark.parametrize("source,operator,expression,before,after", CASES, ids=[c[1] for c in CASES])
def test_each_operator_changes_what_it_names(source, operator, expression, before, after):
    assert call(source, expression) == before
    assert call(mutate(source, operator), expression) == after


def test_arid_lines_and_builtins_are_left_alone():
    source = textwrap.dedent("""\
        def f(procs, x, bar):
            procs.log(f"step {x + 1}")
            print("done", x * 2)
            bar.set_postfix(loss=x - 1)
            return max(x, 1) + procs.log(x)
        """)
    by_line, _ = operators.candidates(source, {2, 3, 4, 5})
    assert set(by_line) == {5}
    ops = {c.operator for c in by_line[5]}
    assert not any(op.startswith(("axis", "function")) for op in ops), ops  # max(x, 1) has no axis; log is a logger's
    assert "arithmetic: + -> -" in ops


def test_same_bytecode_is_trivially_equivalent():
    assert plan.same_bytecode("x = 2 * 3\n", "x = 6\n")  # constants folded by the compiler
    assert not plan.same_bytecode("x = 2 * 3\n", "x = 2 / 3\n")
    assert not plan.same_bytecode("def f(a):\n    return a\n", "def f(a):\n    return None\n")


CPP = textwrap.dedent("""\
    // a comment: x < y + 1.5f
    /* a block
       i < n; */
    #define WIDTH 8
    for (int64_t i = 0; i < n; ++i) v[i] = T(0.5) * v[i];
    for (; i + 8 <= n; i += 8) store(v + i, f(load(v + i)));
    if (x > 0) acc += w * x;  // keep this comment
    hs[i] += z[i];
    const float scale = 0.7978845608f;
    log("a < b - c", x - y);
    """)


def cpp(line: int) -> list[tuple[int, str, str]]:
    return [(m.column, m.operator, m.text.strip()) for m in operators_cpp.candidates(CPP, {line}).get(line, [])]


def test_cpp_operators_give_the_line_they_name():
    assert operators_cpp.candidates(CPP, {1, 2, 3, 4}) == {}  # comments and the preprocessor
    first = cpp(5)[:3]
    assert first == [
        (25, "loop: bound one early", "for (int64_t i = 0; i < n - 1; ++i) v[i] = T(0.5) * v[i];"),
        (23, "comparison: < -> <=", "for (int64_t i = 0; i <= n; ++i) v[i] = T(0.5) * v[i];"),
        (47, "arithmetic: * -> /", "for (int64_t i = 0; i < n; ++i) v[i] = T(0.5) / v[i];"),
    ]
    constants = [m for m in cpp(5) if m[1].startswith("constant")]
    assert constants[0][2] == "for (int64_t i = 1; i < n; ++i) v[i] = T(0.5) * v[i];"
    assert constants[1][1] == "constant: 0.5 -> 0.5005"
    assert cpp(5)[-1][1:] == ("statement: for body removed", "for (int64_t i = 0; i < n; ++i) ;")
    assert cpp(6)[0][2] == "for (; i + 8 <= n - 1; i += 8) store(v + i, f(load(v + i)));"  # the vector tail
    assert ("arithmetic: += -> -=", "for (; i + 8 <= n; i -= 8) store(v + i, f(load(v + i)));") in [
        m[1:] for m in cpp(6)
    ]
    seven = [m[2] for m in cpp(7)]
    assert seven[0] == "if (x >= 0) acc += w * x;  // keep this comment"
    assert "if (x > 0) ;  // keep this comment" in seven
    assert cpp(8)[-1][1:] == ("statement: removed", ";")
    scale = [m for m in cpp(9) if m[1].startswith("constant")]
    assert scale[0][2] == f"const float scale = {0.7978845608 * 1.001!r}f;"
    assert all("a < b - c" in m[2] for m in cpp(10)[:-1]) and cpp(10)[-1][2] == ";"  # the string is never mutated


def test_a_floating_zero_becomes_one_never_itself():
    """A constant scaled by 1.001 would leave 0.0 as 0.0: a mutant that is the original line."""
    found = operators_cpp.candidates("double total = std::accumulate(e, e + n, 0.0);\n", {1})[1]
    assert [m.operator for m in found if m.operator.startswith("constant")] == ["constant: 0.0 -> 1.0"]


def test_a_mark_after_the_closing_bracket_covers_the_statement():
    source = "x = [\n    1 + 2,\n    3,\n]  # mutate: skip as formatted\n"
    source += "y = [\n    4,  # mutate: skip this one only\n    5,\n]\n"
    by_line, skipped = operators.candidates(source, set(range(1, 9)))
    assert sorted(skipped) == [1, 2, 3, 4, 6] and set(skipped.values()) == {"as formatted", "this one only"}
    assert set(by_line) == {7}


def test_skip_marks_in_either_language():
    assert operators.skip_marks("int a = 1;  // mutate: skip the C++ says why\n", {1}) == {1: "the C++ says why"}
    assert operators.skip_marks("a = 1  # mutate: skip\nb = 2\n", {1, 2}) == {1: "no reason given"}


def test_guards_equal_arguments_and_starred_calls_get_no_mutant_that_cannot_mean_a_bug():
    def operators_of(source):
        return [c.operator for line in operators.candidates(source, {1})[0].values() for c in line]

    assert not any(o.startswith("constant") for o in operators_of("y = x + 1e-08\n"))  # a guard against 0
    assert "constant: 1e-06 -> 2e-06" in operators_of("y = x + 1e-6\n")
    assert "argument: first two swapped" not in operators_of("y = f(x, x)\n")
    assert "argument: first two swapped" not in operators_of("y = f(*xs, x)\n")
    assert "argument: first two swapped" in operators_of("y = f(x, z)\n")


def test_calls_annotated_values_returned_none_and_a_later_handler():
    def operators_of(source, line=1):
        return [c.operator for found in operators.candidates(source, {line})[0].values() for c in found]

    assert "call: g(x) -> x" in operators_of("y = g(x)\n")
    assert not any(o.startswith("call") for o in operators_of("y = g(x, z)\n") + operators_of("y = len(x)\n"))
    assert "arithmetic: + -> -" in operators_of("x: int = a + 1\n")  # the value after an annotation
    assert "return: value -> None" not in operators_of("def f():\n    return None\n", 2)
    source = "def f(d):\n    try:\n        return d[0] / d[1]\n    except KeyError:\n        return -1\n"
    source += "    except ZeroDivisionError:\n        return 0\n"
    [second] = [c for found in operators.candidates(source, {6})[0].values() for c in found]
    new = "\n".join(ast.unparse(n) for n in (second.new if isinstance(second.new, list) else [second.new]))
    mutated = anchor.splice(source, anchor.Place("m.py", (second.node,), {}), new)
    assert call(source, "f({0: 1, 1: 0})") == 0 and call(mutated, "f({0: 1, 1: 0})") == "ZeroDivisionError"
    assert call(mutated, "f({})") == -1  # the first handler stays


def test_cpp_strings_hide_their_operators_and_their_slashes():
    def texts(line):
        return [m.text for m in operators_cpp.candidates(line + "\n", {1}).get(1, [])]

    assert 'f("//", a - b);' in texts('f("//", a + b);')  # a `//` in a string starts no comment
    after = texts('y = f("a 1") + c;')  # the string ends with what would be a constant
    assert after == ['y = f("a 1") - c;', ";"]  # code after a string
    before = texts('y = c + f("a-b");')
    assert 'y = c - f("a-b");' in before and all('"a-b"' in t for t in before[:-1])  # and before it


def test_transposes_swap_their_conjugate_and_only_axis_first_calls_move_a_positional_axis():
    def found(source):
        return {c.operator: ast.unparse(c.new) for line in operators.candidates(source, {1})[0].values() for c in line}

    assert found("y = x.mT\n")["conjugate: added (.mT -> .mH)"] == "x.mH"
    assert found("y = x.mH\n")["conjugate: dropped (.mH -> .mT)"] == "x.mT"
    assert not any(o.startswith("conjugate") for o in found("y = x.T\n"))
    assert found("y = x.sum(1)\n")["axis: argument 0 1 -> 2"] == "x.sum(2)"
    assert not any(o.startswith("axis") for o in found("y = x.roll(1)\n"))  # roll's first argument is a shift


def test_masks_and_slices_move_what_they_name():
    def found(source):
        return {c.operator: ast.unparse(c.new) for line in operators.candidates(source, {1})[0].values() for c in line}

    assert found("y = torch.clamp(x, 0)\n")["mask: .clamp(...) dropped"] == "x"
    assert found("y = x.clamp(0)\n")["mask: .clamp(...) dropped"] == "x"
    assert found("y = torch.where(c, a, b)\n")["mask: where(c, a, b) -> a"] == "a"
    assert found("y = x[:3]\n")["slice: index 0 [:3] shifted by one"] == "x[1:4]"  # an absent start is 0
    assert found("y = x[a:b]\n")["slice: index 0 [a:b] shifted by one"] == "x[a + 1:b + 1]"
    assert found("y = x[0, 1:]\n")["slice: index 1 [1:] shifted by one"] == "x[0, 2:]"
    both = found("y = x[-1:, :-1]\n")
    assert both["slice: index 0 [-1:] shifted by one"] == "x[-1:, :-1]"  # a start of -1 kept: one later is past the end
    assert both["slice: index 1 [:-1] shifted by one"] == "x[-1:, 1:]"  # an end of -1 one later is the end
    assert not any(o.startswith("slice") for o in found("y = x[:]\n"))


def test_exp_softplus_and_log_swap_into_what_they_name():
    def functions(source):
        found = operators.candidates(source + "\n", {1})[0].values()
        return {c.operator: ast.unparse(c.new) for line in found for c in line if c.operator.startswith("function")}

    assert functions("y = x.exp()") == {"function: exp -> softplus": "x.exp().log1p()"}  # log1p(exp(x))
    assert functions("y = torch.exp(x)") == {"function: exp -> softplus": "torch.log1p(torch.exp(x))"}
    assert functions("y = F.softplus(x)") == {"function: softplus -> exp": "x.exp()"}
    assert functions("y = torch.log(x)") == {"function: log -> log1p": "torch.log1p(x)"}
    assert functions("y = x.log1p()") == {"function: log1p -> log": "x.log()"}

"""The mutation operators' tables: which operator, function or constant becomes which, and what
is plumbing (never mutated)."""

import ast

ARITHMETIC = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.MatMult: ast.Mult,
}
SYMBOL = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.MatMult: "@",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.And: "and",
    ast.Or: "or",
}
COMPARISON = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
DTYPES = {"float64": "float32", "complex128": "complex64", "double": "float", "cdouble": "cfloat"}
# calls whose `dim` / `axis` keyword, or first integer argument (AXIS_FIRST), names an axis
AXIS_FIRST = {
    "sum",
    "mean",
    "cumsum",
    "cumprod",
    "softmax",
    "log_softmax",
    "logsumexp",
    "var",
    "std",
    "amax",
    "amin",
    "max",
    "min",
    "prod",
    "argmax",
    "argmin",
    "unsqueeze",
    "squeeze",
    "transpose",
    "swapaxes",
    "movedim",
    "any",
    "all",
    "expand_dims",
    "vecdot",
}
REDUCTIONS = AXIS_FIRST | {"norm", "flip", "roll", "chunk", "cat", "stack", "diff", "concatenate", "split", "gather"}
# builtins whose removal can only raise a TypeError: no realistic bug
PLUMBING = {
    "range",
    "len",
    "enumerate",
    "zip",
    "print",
    "isinstance",
    "str",
    "repr",
    "sorted",
    "list",
    "tuple",
    "dict",
    "set",
    "type",
    "iter",
    "next",
    "open",
    "super",
    "reversed",
    "Path",
}
CLAMPS = {"clamp", "clamp_", "clamp_min", "clamp_max", "clip", "clip_", "masked_fill", "masked_fill_", "nan_to_num"}
# a float constant this small is a guard against 0: doubling it is no realistic bug
EPSILON = 1e-6  # mutate: skip a judgement of what is small, not a computed edge
# families first: a line keeps its first `per_line` mutants, so the numerical ones come first
ORDER = [
    "conjugate",
    "dtype",
    "slice",
    "axis",
    "function",
    "mask",
    "comparison",
    "arithmetic",
    "constant",
    "boolean",
    "unary",
    "range",
    "string",
    "keyword",
    "return",
    "exception",
    "decorator",
    "loop",
    "statement",
    "argument",
    "call",
]
MATH_MODULES = {"torch", "np", "numpy", "math", "F"}  # receivers whose log / exp / clamp are the math functions
# calls that only report (logging, progress, messages): a line that is one of them is arid, never mutated
ARID = {
    "log",
    "print",
    "debug",
    "info",
    "warning",
    "warn",
    "set_description",
    "set_postfix",
    "set_postfix_str",
    "write_status",
}
# string modes a keyword argument selects, and the other mode a realistic slip picks
MODES = {
    "sum": "mean",
    "mean": "sum",
    "none": "mean",
    "batchmean": "mean",
    "forward": "backward",
    "backward": "forward",
    "ortho": "backward",
    "left": "right",
    "right": "left",
    "reflect": "constant",
    "constant": "reflect",
    "replicate": "constant",
    "circular": "constant",
    "linear": "nearest",
    "nearest": "linear",
    "tanh": "none",
    "fan_in": "fan_out",
    "fan_out": "fan_in",
    "high": "low",
    "low": "high",
}
AUGMENTED = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div}

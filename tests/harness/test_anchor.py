"""Anchors on a small module written here: every definition found by its qualified name, wherever
it is nested, and a pattern of statements matched up to a renaming from its names to the code's."""

import ast

import pytest

from sashimi.harness.anchor import Place, Stale, candidates, locate, parse_pattern, qualified_defs, splice

SOURCE = """
if True:
    def f(b):
        x = b + 1
        return x
class A:
    def g(self):
        return 0
    class B:
        def h(self):
            return 1
"""


def test_every_definition_is_found_by_its_qualified_name_wherever_it_is_nested():
    tree = ast.parse(SOURCE)
    defs = qualified_defs(tree)
    assert sorted(defs) == ["", "A", "A.B", "A.B.h", "A.g", "f"]
    assert defs["f"].lineno == 3 and defs["A.B.h"].lineno == 10 and defs[""] is tree


def test_a_run_of_statements_matches_up_to_a_renaming_from_the_patterns_names_to_the_codes():
    tree = ast.parse(SOURCE)
    pattern = parse_pattern("y = a + 1\nreturn y", statements=True)
    [(nodes, renaming)] = candidates(qualified_defs(tree)["f"], pattern)
    assert [n.lineno for n in nodes] == [4, 5]
    assert renaming == {"y": "x", "a": "b"}  # pattern name -> code name
    assert candidates(qualified_defs(tree)["f"], parse_pattern("y = a + 2\nreturn y", statements=True)) == []


def test_a_renaming_is_one_to_one():
    tree = ast.parse("def f(x, y):\n    return x + y\n\n\ndef g(x):\n    return x + x\n")
    defs = qualified_defs(tree)
    assert len(candidates(defs["f"], parse_pattern("a + b", False))) == 1
    assert candidates(defs["f"], parse_pattern("a + a", False)) == []  # a cannot be both x and y
    assert candidates(defs["g"], parse_pattern("a + b", False)) == []  # nor x be both a and b
    assert len(candidates(defs["g"], parse_pattern("a + a", False))) == 1


def test_the_exact_match_wins_over_a_renamed_one_and_an_empty_pattern_is_stale(tmp_path):
    (tmp_path / "sashimi").mkdir()
    (tmp_path / "sashimi" / "m.py").write_text("def f(x, y):\n    a = y + 1\n    b = x + 1\n    return a + b\n")
    assert locate(tmp_path, "sashimi/m.py", "f", "x + 1").line == 3  # y + 1 matches too, renamed
    with pytest.raises(Stale, match="empty pattern"):
        locate(tmp_path, "sashimi/m.py", "f", "", statements=True)


def test_a_file_that_does_not_parse_is_passed_over_when_a_name_moved(tmp_path):
    (tmp_path / "sashimi").mkdir()
    (tmp_path / "sashimi" / "bad.py").write_text("def f(:\n")  # the hint, broken
    (tmp_path / "sashimi" / "m.py").write_text("def f(x):\n    return x + 1\n")
    place = locate(tmp_path, "sashimi/bad.py", "f", "x + 1")
    assert (place.file, place.line) == ("sashimi/m.py", 2)


def test_a_splice_counts_characters_where_the_parser_counts_bytes():
    # the match's line starts with a 2-byte character, and so does the match (the parser's
    # offsets are bytes); a 3-byte one follows it
    text = 'def f(é):\n    return (1 +\né + é * 2 + len("—"))\n'
    [place] = candidates(qualified_defs(ast.parse(text))["f"], parse_pattern("a * 2", False))
    spliced = splice(text, Place("m.py", *place), "a / 2")
    assert spliced == 'def f(é):\n    return (1 +\né + (é / 2) + len("—"))\n'

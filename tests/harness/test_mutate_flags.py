"""`python -m sashimi.mutate`'s flags parse as its --help says: defaults, types, repeatable flags,
switches, and the combinations it refuses before any work."""

from pathlib import Path

import pytest

from sashimi import mutate
from sashimi.harness.catalogue import CATALOGUE


def test_the_defaults_are_the_helps():
    args = mutate.parse([])
    assert (args.diff, args.replay, args.list, args.only, args.budget) == (None, False, False, None, None)
    assert (args.under, args.lines, args.allow_partial, args.per_line, args.jobs) == (None, None, False, 1, 2)
    assert (args.gate, args.no_gate, args.fixtures, args.timeout, args.json, args.markdown) == (
        False,
        False,
        None,
        600,
        False,
        None,
    )
    assert args.root == mutate.ROOT
    assert mutate.parse(["--diff", "HEAD"]).budget == 10.0  # --diff's own default budget


def test_values_take_their_types_and_repeatable_flags_collect():
    args = mutate.parse(
        ["--diff", "HEAD~2", "--budget", "2.5", "--per-line", "3", "--jobs", "1", "--timeout", "30"]
        + ["--fixtures", "fx", "--markdown", "m.md", "--root", "r", "--under", "a", "--under", "b/c.py"]
        + ["--lines", "x.py:1", "--lines", "y.py:22", "--json", "--allow-partial", "--gate"]
    )
    assert (args.diff, args.budget, args.per_line, args.jobs, args.timeout) == ("HEAD~2", 2.5, 3, 1, 30)
    assert (args.fixtures, args.markdown, args.root) == (Path("fx"), Path("m.md"), Path("r"))
    assert (args.under, args.lines) == (["a", "b/c.py"], ["x.py:1", "y.py:22"])
    assert args.json and args.allow_partial and args.gate and not args.no_gate
    first, second = CATALOGUE[0].id, CATALOGUE[1].id
    assert mutate.parse(["--only", first, "--only", second]).only == [first, second]
    assert mutate.parse(["--replay"]).replay and mutate.parse(["--list"]).list
    assert mutate.parse(["--no-gate"]).no_gate


def test_the_help_names_the_command_and_its_values(capsys):
    with pytest.raises(SystemExit):
        mutate.parse(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: python -m sashimi.mutate [-h] [--diff REV | --replay | --list] [--only ID]")
    assert "[--lines FILE:LINE]" in text and "[--under PATH]" in text and "[--budget MINUTES]" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--diff", "HEAD", "--only", "x"], "--only names catalogue entries; it cannot be combined with --diff"),
        (["--replay", "--only", "x"], "--only names catalogue entries; it cannot be combined with --diff"),
        (["--under", "sashimi"], "--under and --lines limit the mutants of a change; they need --diff"),
        (["--lines", "a.py:3"], "--under and --lines limit the mutants of a change; they need --diff"),
        (["--diff", "HEAD", "--lines", "a.py"], "--lines takes FILE:LINE (sashimi/model/native.py:50); got 'a.py'"),
        (["--diff", "HEAD", "--lines", "a.py:3", "--lines", "b.py:x"], "got 'b.py:x'"),
        (["--jobs", "0"], "--jobs must be at least 1; got 0"),
        (["--timeout", "0"], "--timeout must be at least 1 second; got 0"),
        (["--diff", "HEAD", "--budget", "0"], "--budget must be a positive number of minutes; got 0.0"),
        (["--only", "no-such-entry"], "unknown catalogue entries ['no-such-entry']; see --list"),
        (["--gate", "--no-gate"], "not allowed with argument"),
        (["--diff", "HEAD", "--replay"], "not allowed with argument"),
    ],
)
def test_a_combination_it_cannot_serve_is_refused_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        mutate.parse(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err

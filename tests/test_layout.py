"""The layers stay visible: the library never imports a command, no test module imports another,
no module of the library, reference/, specs/ or tools/ grows past 300 lines, no line past 120
characters (pyproject's ruff line-length), every command answers --help, and every citation of
docs/DESIGN.md names a heading that exists there."""

import ast
import re
import runpy
import subprocess
import sys

import pytest

from sashimi import __main__ as sashimi_main
from sashimi.__main__ import COMMANDS
from tests.helpers import ROOT

LIBRARY = [p for p in (ROOT / "sashimi").rglob("*.py") if p.parent != ROOT / "sashimi"]
SOURCES = sorted(
    [
        *(ROOT / "sashimi").rglob("*.py"),
        *(ROOT / "reference").rglob("*.py"),
        *(ROOT / "specs").glob("*.py"),
        *(ROOT / "tools").rglob("*.py"),
    ]
)


def imported_modules(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_every_command_is_a_top_level_module():
    assert set(COMMANDS) == {p.stem for p in (ROOT / "sashimi").glob("*.py")} - {"__init__", "__main__"}


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_library_never_imports_a_command(path):
    commands = {f"sashimi.{name}" for name in COMMANDS}
    assert not imported_modules(path) & commands
    if path.parent.name != "harness":  # the harness uses the library, never the other way round
        assert not {m for m in imported_modules(path) if m.startswith("sashimi.harness")}


def test_no_test_module_imports_another():
    for path in (ROOT / "tests").rglob("*.py"):
        offending = {m for m in imported_modules(path) if re.search(r"(^|\.)test_\w+$", m)}
        assert not offending, f"{path} imports {offending}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= 300


def test_the_test_helpers_hold_strategies_and_fixtures_and_stay_small():
    """Independent re-implementations live in reference/, shared assertions beside the tests that use them."""
    text = (ROOT / "tests" / "helpers.py").read_text()
    assert len(text.splitlines()) <= 300
    assert not re.search(r"^def (nucleus_log_probs|plain_steps|assert_step_is_pure)\(", text, re.M)


def test_model_constructors_take_the_configuration_whole():
    """At most five parameters besides a ModelConfig or S4Options: options travel down as one object."""
    crowded = []
    for path in sorted((ROOT / "sashimi" / "model").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "__init__":
                args = [
                    a
                    for a in node.args.args[1:] + node.args.kwonlyargs
                    if ast.unparse(a.annotation or ast.Constant(None)) not in ("ModelConfig", "S4Options")
                ]
                if len(args) > 5:
                    crowded.append(f"{path.name}:{node.lineno} ({len(args)} parameters)")
    assert not crowded, crowded


def test_no_line_is_longer_than_ruffs_limit():
    """The catalogue's entries are code patterns kept one per string (ruff exempts them too)."""
    limit = int(re.search(r"^line-length = (\d+)$", (ROOT / "pyproject.toml").read_text(), re.M).group(1))
    files = [*SOURCES, *(ROOT / "tests").rglob("*.py")]
    long = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in files
        if not path.name.startswith("catalogue")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if len(line) > limit
    ]
    assert limit == 120 and not long, f"lines over {limit} characters: {long[:10]}"


def test_design_citations_name_existing_headings():
    headings = {
        line.lstrip("#").strip()
        for line in (ROOT / "docs" / "DESIGN.md").read_text().splitlines()
        if line.startswith("#")
    }
    files = [
        *SOURCES,
        *(ROOT / "specs").glob("*.json"),
        *(ROOT / "tests").rglob("*.py"),
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
    ]
    cited = {
        (f.name, m.replace("\\'", "'"))  # as written inside a single-quoted string literal
        for f in files
        for m in re.findall(r'DESIGN\.md, \\?"(.+?)\\?"', f.read_text())
    }
    assert cited, "no citations found: the pattern is out of date"
    missing = {c for c in cited if c[1] not in headings}
    assert not missing, f"citations of headings that docs/DESIGN.md lacks: {sorted(missing)}"
    assert not [f.name for f in files if re.search(r"DESIGN section \d", f.read_text())]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_answers_help(command, capsys):
    """Through the dispatcher, in this process (a child process per command would import torch ten
    times; test_the_dispatcher_names_an_unknown_command and test_python_m_runs_a_command run it as
    `python -m sashimi`)."""
    with pytest.raises(SystemExit) as e:
        sashimi_main.main([command, "--help"])
    assert e.value.code == 0 and f"usage: python -m sashimi.{command} " in capsys.readouterr().out


@pytest.mark.parametrize("tool", sorted((ROOT / "tools").glob("*.py")), ids=lambda p: p.name)
def test_every_tool_answers_help(tool, monkeypatch, capsys):
    """The scripts in tools/ still import beside the library they call (run as `python tools/X.py`)."""
    monkeypatch.syspath_prepend(str(tool.parent))
    monkeypatch.setattr(sys, "argv", [str(tool), "--help"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(tool), run_name="__main__")
    assert e.value.code == 0 and "usage:" in capsys.readouterr().out


def test_python_m_runs_a_command():
    result = subprocess.run(
        [sys.executable, "-m", "sashimi", "specs", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "usage: python -m sashimi.specs" in result.stdout, result.stderr


def test_the_dispatcher_names_an_unknown_command():
    result = subprocess.run([sys.executable, "-m", "sashimi", "nope"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "error: unknown command 'nope'" in result.stderr

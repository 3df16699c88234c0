"""The oracle table (specs/oracles.json, shown in docs/ARCHITECTURE.md): every fast function beside
its in-package oracle, its float64 reference, the strategy and tolerance row its test uses."""

import importlib

import pytest

import specs
from tests import helpers
from tests.helpers import ROOT

ROWS = specs.load("oracles")["oracles"]


def resolve(dotted: str):
    """The object a dotted name names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["fast"].rsplit(".", 1)[-1])
def test_every_name_resolves_and_the_test_uses_the_reference_and_the_row(row):
    for key in ("fast", "oracle", "reference"):
        if row[key]:
            assert callable(resolve(row[key])), f"{key} {row[key]}"
    assert row["reference"] is None or row["reference"].startswith("reference."), row
    assert row["oracle"] is None or row["oracle"].startswith("sashimi."), row
    assert row["reference"] or row["oracle"], f"{row['fast']} has nothing independent checking it"
    test = (ROOT / row["test"]).read_text()
    names = [row[k].rsplit(".", 1)[-1] for k in ("fast", "oracle", "reference") if row[k]]
    assert all(name in test or name in (ROOT / "tests" / "helpers.py").read_text() for name in names), (row, names)
    if row["tolerance"]:  # the test may name the row with its dtype filled in (f"kernel_{dtype}")
        assert row["tolerance"] in specs.load("tolerances"), row
        assert row["tolerance"] in test or row["tolerance"].rsplit("_float", 1)[0] + "_{dtype}" in test, row
    if row["strategy"]:
        assert hasattr(helpers, row["strategy"]) and row["strategy"] in test, row


def test_in_package_oracles_share_one_suffix_or_are_a_mode():
    """A plain function kept as an oracle ends in _plain; the others are a step mode or the module step."""
    plain = [
        r["oracle"] for r in ROWS if r["oracle"] and "." in r["oracle"] and r["oracle"].rsplit(".", 1)[-1].islower()
    ]
    allowed = {"sashimi.model.recurrence.step_matrices"}  # setup_step("dense"): the dense recurrence
    assert all(name.endswith("_plain") or name in allowed for name in plain if not name.endswith(".step")), plain


def test_the_architecture_page_shows_every_row():
    page = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    missing = [r["fast"] for r in ROWS if f"`{r['fast']}`" not in page]
    assert not missing, f"docs/ARCHITECTURE.md lacks the oracle rows of {missing}"

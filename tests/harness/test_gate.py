"""python -m sashimi.check: passes on this tree, fails naming the check when an output moves."""

import numpy as np
import pytest

from sashimi import check as check_cmd
from sashimi.harness import gate, golden


@pytest.fixture(scope="module")
def measured():
    return golden.golden_outputs()


def test_golden_outputs_match_the_committed_file(measured):
    rows = golden.golden_rows(measured, golden.read())
    failed = [r for r in rows if not r.passed]
    assert not failed, failed
    assert {r.name for r in rows} >= {"model8/logits_conv", "model8/logits_step", "model16/train_losses", "quantize/mulaw8/tokens"}


def test_a_moved_output_fails_and_is_named(measured):
    stored = golden.read()
    stored["model8/train_losses"] = stored["model8/train_losses"] * (1 + 1e-5)
    stored["quantize/linear16/tokens"] = stored["quantize/linear16/tokens"] + 1
    failed = {r.name for r in golden.golden_rows(measured, stored) if not r.passed}
    assert failed == {"model8/train_losses", "quantize/linear16/tokens"}


def test_golden_outputs_are_deterministic(measured):
    again = golden.golden_outputs()
    assert all(np.array_equal(measured[k], again[k]) for k in measured)


def test_command_passes(capsys):
    assert check_cmd.main([]) == 0
    out = capsys.readouterr().out
    assert "checks pass" in out and "FAIL" not in out


def test_a_crashing_part_is_a_named_failure(monkeypatch):
    """A mutant that makes the model raise shows up as a failed check naming the part, not as a crash."""

    def broken():
        raise RuntimeError("UpPool.step: steps out of phase")

    monkeypatch.setitem(golden.GOLDEN_PARTS, "data", broken)
    errors = {}
    measured = golden.golden_outputs(errors)
    assert errors == {"data": "RuntimeError: UpPool.step: steps out of phase"}
    rows = golden.golden_rows(measured, golden.read(), errors)
    failed = [r for r in rows if not r.passed]
    assert [r.name for r in failed] == ["data outputs"] and "out of phase" in failed[0].measured


def test_optimizer_and_identities_hold():
    """AdamW groups and the plateau schedule match specs/presets.json; decoder slices, cache, token
    range; gradient clipping (AdamW alone is blind to a uniform gradient scale, so SGD shows it)."""
    rows = gate.optimizer_rows() + gate.identity_rows()
    assert len(rows) == 11 and all(r.passed for r in rows), [r for r in rows if not r.passed]

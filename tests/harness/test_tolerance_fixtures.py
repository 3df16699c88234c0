"""The tolerance measure's rows about the published fixtures: which of `interop check`'s verdicts each
takes (a stand-in check on a folder of named files, so the selection is known), and the first
published kernel and C~ measured against the fixture's own arrays."""

import json
import shutil

import numpy as np
import pytest

import specs
from sashimi.harness import gate, published, tolerance_fixtures, tolerances
from sashimi.harness.verdict import Verdict, tolerance_bound
from tests.helpers import PUBLISHED


def verdict(row: str, name: str, error: float, scale: float, bound: float | None = 1.0) -> Verdict:
    return Verdict("interop", name, "", "", True, error=error, bound=bound, row=row, scale=scale)


@pytest.fixture
def fake_fixtures(tmp_path, monkeypatch):
    """Three fixtures: a plain one, one whose sidecar names a known defect (its "published step" rows
    must fail, so the measure leaves them out), and a training one; `published.check` gives each a
    verdict per row kind, so which the measure takes is known."""
    for name in ("pipeline_a", "pipeline_defect", "training_b"):
        (tmp_path / f"{name}.npz").write_bytes(b"")
    (tmp_path / "pipeline_defect.json").write_text(json.dumps({"known_defect": {"fails": ["published step"]}}))
    (tmp_path / "pipeline_a.json").write_text(json.dumps({"model": "no defect here"}))
    checks = {
        "pipeline_a": [
            verdict("interop_float64", "forward vs published float64", 1e-15, 2.0),
            verdict("interop_float64", "published step vs float64", 2e-15, 3.0),
            verdict("interop_float32_slack", "forward float32", 1e-7, 2.0),
        ],
        "pipeline_defect": [
            verdict("interop_float64", "forward vs published float64", 3e-15, 4.0),
            verdict("interop_float64", "published step vs float64", 0.5, 5.0),
        ],
        "training_b": [
            verdict("training_float64", "loss", 1e-17, None, bound=2e-10),
            verdict("training_float64", "gradient w", 3e-16, None, bound=4e-10),
            verdict("", "groups", None, None, bound=None),
        ],
    }
    monkeypatch.setattr(gate, "DEFAULT_FIXTURES", tmp_path)
    monkeypatch.setattr(published, "check", lambda path: checks[path.stem])


def test_the_float64_row_takes_every_float64_verdict_but_a_known_defects(fake_fixtures):
    assert tolerance_fixtures.published_float64(None, 0) == [(1e-15, 2.0), (2e-15, 3.0), (3e-15, 4.0)]


def test_the_training_row_takes_every_numeric_verdict_with_its_scale(fake_fixtures):
    """The scale is the bound over the row's rtol: max |expected| of the official tensor."""
    rtol = specs.load("tolerances")["training_float64"]["rtol"]
    cases = tolerance_fixtures.published_training(None, 0)
    assert [e for e, _ in cases] == [1e-17, 3e-16] and [s for _, s in cases] == pytest.approx(
        [2e-10 / rtol, 4e-10 / rtol]
    )


def test_the_first_published_kernel_and_c_tilde_against_the_fixtures_arrays(tmp_path, monkeypatch):
    """Our float32 kernel of the standalone fixture's first S4 layer against its published float32 and
    float64 kernels, and C~ written from its initial C against its published C~: scales are those
    arrays' largest entries, errors within the rows' bounds (and above float64 rounding: float32 work)."""
    shutil.copy(PUBLISHED / "standalone_small.npz", tmp_path)
    monkeypatch.setattr(gate, "DEFAULT_FIXTURES", tmp_path)
    arrays = np.load(PUBLISHED / "standalone_small.npz")
    kernels = tolerance_fixtures.first_published_kernel(False)(None, 0)
    scales = [float(np.abs(arrays[k][0]).max()) for k in ("kernel_first_s4", "kernel_float64.c_layers.0.layer")]
    assert [s for _, s in kernels] == pytest.approx(scales, rel=1e-6)
    (c_tilde,) = tolerance_fixtures.first_published_kernel(True)(None, 0)
    assert c_tilde[1] == pytest.approx(float(np.abs(arrays["c_layers.0.layer.layer.kernel.C"]).max()), rel=1e-6)
    for (error, scale), row in [*((k, "published_kernel") for k in kernels), (c_tilde, "published_C_tilde")]:
        assert 1e-12 < error <= tolerance_bound(row, scale=scale), (row, error)


def test_the_measure_takes_the_kernel_rows_from_the_kernel_and_from_the_initial_c(tmp_path, monkeypatch):
    """published_kernel: our kernel against the published float32 and float64 ones (two cases);
    published_C_tilde: C~ from the initial C (one)."""
    shutil.copy(PUBLISHED / "standalone_small.npz", tmp_path)
    monkeypatch.setattr(gate, "DEFAULT_FIXTURES", tmp_path)
    assert [len(tolerances.FIXED[row](None, 0)) for row in ("published_kernel", "published_C_tilde")] == [2, 1]

"""Test-wide settings: one torch thread per xdist worker, hypothesis profiles, the device to test on."""

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# Under `pytest -n auto` every worker is its own process: more than one torch thread each oversubscribes the cores.
torch.set_num_threads(1)

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", derandomize=True, max_examples=20, print_blob=True, **_common)
settings.register_profile("dev", max_examples=20, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=200, print_blob=True, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

FIXTURES = Path(os.environ.get("SASHIMI_FIXTURES", Path(__file__).resolve().parent.parent / "shared" / "fixtures"))


@pytest.fixture
def device() -> torch.device:
    """The device under test: SASHIMI_TEST_DEVICE (tox -e gpu sets cuda), else CPU."""
    name = os.environ.get("SASHIMI_TEST_DEVICE", "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("SASHIMI_TEST_DEVICE=cuda but no CUDA device is available")
    return torch.device(name)


@pytest.fixture
def fixture_a():
    """The published implementation's outputs (../shared/fixtures/official_sashimi_small_a.*)."""
    import numpy as np

    path = FIXTURES / "official_sashimi_small_a.npz"
    if not path.exists():
        pytest.skip(f"published fixture not found at {path} (set SASHIMI_FIXTURES to its folder)")
    return dict(np.load(path))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available here")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)

"""Test-wide settings: one torch thread per xdist worker, hypothesis profiles, the CUDA skip.
Fixtures and every other helper live in tests/helpers.py (registered here as a plugin)."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

pytest_plugins = ("tests.helpers",)

# Under `pytest -n auto` every worker is its own process: more than one torch thread each oversubscribes the cores.
torch.set_num_threads(1)

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", derandomize=True, max_examples=20, print_blob=True, **_common)
settings.register_profile("dev", max_examples=20, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=200, print_blob=True, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available here")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)

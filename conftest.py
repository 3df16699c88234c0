"""Test-wide settings: one torch thread per xdist worker, hypothesis profiles, the CUDA skip.
Fixtures and every other helper live in tests/helpers.py (registered here as a plugin)."""

import os

import pytest
import torch
from hypothesis import HealthCheck, Phase, settings

pytest.register_assert_rewrite("tests.helpers")  # imported here first, before pytest_plugins loads it
from tests.helpers import hypothesis_profile  # noqa: E402

pytest_plugins = ("tests.helpers",)

# Under `pytest -n auto` every worker is its own process: more than one torch thread each oversubscribes the cores.
torch.set_num_threads(1)

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "ci", derandomize=True, max_examples=20, print_blob=True, **_common
)  # the model properties: MODEL_EXAMPLES (tests/helpers.py)
settings.register_profile("dev", max_examples=20, print_blob=True, **_common)
# a mutant needs only the first failing example: `ci` without the shrink phase (sashimi.mutate runs it)
settings.register_profile(
    "mutate", derandomize=True, max_examples=20, phases=[Phase.explicit, Phase.reuse, Phase.generate], **_common
)
settings.register_profile("thorough", max_examples=200, print_blob=True, **_common)
settings.load_profile(hypothesis_profile())  # HYPOTHESIS_PROFILE, else `ci` where CI is set, else `dev`


def pytest_configure(config):
    # a run asked to test CUDA (tox -e gpu) on a machine without it is broken, not a run of skips
    if os.environ.get("SASHIMI_TEST_DEVICE", "cpu").startswith("cuda") and not torch.cuda.is_available():
        raise pytest.UsageError(
            "SASHIMI_TEST_DEVICE asks for CUDA but no CUDA device is available; set SASHIMI_TEST_DEVICE=cpu to run on "
            "CPU"
        )


def pytest_collection_modifyitems(config, items):
    # the tests marked `first` (the longest of the fast suite) first, so that the workers of `pytest
    # -n auto` start with them and end together on short ones, not one on a long test while the other idles
    items.sort(key=lambda item: "first" not in item.keywords)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available here")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)

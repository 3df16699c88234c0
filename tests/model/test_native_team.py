"""The native step's team (fewer rows than threads: the threads share each wide depth's linears and
recurrence channels, native_step.cpp's `Team`) against the same step alone, on every thread count
that splits a width unevenly: identical numbers, since each one is computed by the same code in the
same order; and, through that, against the modules' step."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sashimi.harness.verdict import assert_close
from sashimi.model import native
from sashimi.model.native import NativeStep
from tests import helpers
from tests.helpers import model_properties, seeds, small_model_configs, tokens
from tests.model.weights import randomized

needs_native = pytest.mark.skipif(not native.available(), reason=f"no native step here: {native.reason()}")


def logits_of(model, x: torch.Tensor, threads: int, team_width: int) -> torch.Tensor:
    step = NativeStep(model, x.shape[0], threads, team_width)
    with torch.no_grad():
        return torch.stack([step.step(x[:, t]) for t in range(x.shape[1])], 1)


@needs_native
@model_properties(0.2)
@given(small_model_configs(), seeds, st.integers(2, 4), st.sampled_from([torch.float32, torch.float64]))
def test_a_team_computes_what_one_thread_computes(config, seed, threads, dtype):
    """Every depth run by 2-4 threads as a team (team_width 1), rows 1 to threads - 1, over 3 coarse
    blocks (every depth refills its finer one): the logits equal one thread's bit for bit."""
    model = randomized(seed, dtype, **config)
    model.setup_step()
    x = tokens(seed, 1 + seed % (threads - 1), 3 * math.prod(config["pool"]), 2 ** config["bits"])
    assert torch.equal(logits_of(model, x, threads, 1), logits_of(model, x, 1, 1))


@needs_native
@pytest.mark.parametrize("d_model, threads", [(12, 3), (20, 2), (33, 2)])
def test_a_team_over_widths_that_split_unevenly_meets_the_module_step(d_model, threads):
    """Widths whose channel ranges are not whole vectors per thread (12 on 3 threads: one thread gets
    none), a partial last output tile (33, float32), GLU and ff 2: the team against the modules'
    step (float64 and float32 rows), and equal to one thread."""
    dtype = torch.float32 if d_model == 33 else torch.float64
    model = randomized(5, dtype, bits=8, d_model=d_model, n_layers=1, pool=[2, 2], expand=2, ff=2, d_state=8)
    model.setup_step()
    x = tokens(5, 1, 12, 256)
    team = logits_of(model, x, threads, 1)
    assert torch.equal(team, logits_of(model, x, 1, 1))
    row = "native_vs_module_step_float64" if dtype == torch.float64 else "native_vs_module_step_float32"
    assert_close(team, helpers.rollout(model, x), row)

"""The native step's rows in register tiles (native_step.cpp: `TILE_ROWS` rows per linear tile, 4
rows per pass of the recurrence, then pairs and single rows): a row computed beside others equals
the same row computed alone, bit for bit (each row's sums run in the same order whatever its
neighbours), and the batch meets the modules' step within the native rows' tolerance, for batches
that leave every remainder of the tiles."""

import pytest
import torch

from sashimi.harness.verdict import assert_close
from sashimi.model import native, native_parts
from sashimi.model.native import NativeStep
from tests import helpers
from tests.helpers import tokens
from tests.model.weights import randomized

needs_native = pytest.mark.skipif(not native.available(), reason=f"no native step here: {native.reason()}")


def logits_of(model, x: torch.Tensor, threads: int) -> torch.Tensor:
    model.setup_step()
    step = NativeStep(model, x.shape[0], threads)
    with torch.no_grad():
        return torch.stack([step.step(x[:, t]) for t in range(x.shape[1])], 1)


@needs_native
@pytest.mark.parametrize(
    "dtype,d_model,batch,threads",
    [(torch.float32, 33, 13, 1), (torch.float32, 20, 19, 2), (torch.float64, 17, 11, 1), (torch.float64, 36, 8, 2)],
    ids=["float32-33-b13", "float32-20-b19-2t", "float64-17-b11", "float64-36-b8-2t"],
)
def test_a_row_beside_others_is_the_row_alone(dtype, d_model, batch, threads):
    """Batches of 8 to 19 rows on 1 or 2 threads (tiles of 6, 4, 2 and 1 rows, and the rows a
    thread's share leaves) at widths with a partial last vector: each row's logits over 3 coarse
    blocks equal that row stepped alone, bit for bit, and the batch's are within
    native_vs_module_step of the modules' step."""
    model = randomized(batch, dtype, bits=8, d_model=d_model, n_layers=1, pool=[2, 2], expand=2, ff=2, d_state=8)
    x = tokens(batch, batch, 12, 256)
    together = logits_of(model, x, threads)
    alone = torch.cat([logits_of(model, x[r : r + 1], 1) for r in range(batch)])
    assert torch.equal(together, alone)
    row = "native_vs_module_step_float64" if dtype == torch.float64 else "native_vs_module_step_float32"
    assert_close(together, helpers.rollout(model, x), row)


@needs_native
@pytest.mark.parametrize(
    "batch,team_width",
    [(5, 128), (2, 128), (1, 1), (2, 1), (3, 1)],
    ids=["b5", "b2", "b1-team", "b2-team", "b3-team"],
)
def test_sampling_on_threads_draws_what_one_thread_draws(batch, team_width):
    """`NativeStep.sample` on 2 and 3 threads (rows split, each thread stepping and drawing its rows
    through the whole chunk; or, with fewer rows than threads, a team per depth): the same tokens
    and log-probabilities as 1 thread, bit for bit; and 1 thread's as its step and the draw called
    sample by sample (`native_parts.draw`), over 3 coarse blocks, in two chunks."""
    model = randomized(batch, torch.float32, bits=8, d_model=20, n_layers=1, pool=[2, 2], expand=2, ff=2, d_state=8)
    model.setup_step()
    first = tokens(batch, batch, 1, 256)[:, 0]
    u = torch.rand(12, batch, generator=torch.Generator().manual_seed(batch))
    runs = []
    for threads in (1, 2, 3):
        step = NativeStep(model, batch, threads, team_width)
        a = step.sample(first, u[:5], 0.9, 0.8)
        b = step.sample(a[0][-1], u[5:], 0.9, 0.8)
        runs.append((torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])))
    for got in runs[1:]:
        assert torch.equal(got[0], runs[0][0]) and torch.equal(got[1], runs[0][1])
    step, token, drawn = NativeStep(model, batch, 1), first, []
    for s in range(12):
        token, logp = native_parts.draw(step.step(token), u[s], 0.9, 0.8)
        drawn.append((token, logp))
    assert torch.equal(torch.stack([t for t, _ in drawn]), runs[0][0])
    assert torch.equal(torch.stack([p for _, p in drawn]), runs[0][1])

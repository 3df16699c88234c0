"""The native sampling loop (`NativeStep.sample`: the step and the draw in one call per chunk,
native_step.cpp's `draw`) against the Python loop it replaces and the float64 nucleus of
`reference.sampling`; and `ThreadChoice`, which times the thread counts as it samples."""

import dataclasses
import time

import numpy as np
import pytest
import torch

from reference.sampling import nucleus_log_probs
from sashimi.harness.verdict import assert_close
from sashimi.model import native
from sashimi.model.native_parts import draw, exp_draw
from sashimi.sampling import sample as sampling
from tests import helpers
from tests.helpers import tokens
from tests.model.weights import randomized

needs_native = pytest.mark.skipif(not native.available(), reason=f"no native step here: {native.reason()}")


@needs_native
@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 1.0), (1.3, 0.9), (1.0, 0.5)])
@pytest.mark.parametrize("classes", [3, 256, 1000])
def test_the_native_draw_meets_the_float64_inverse_cdf_and_the_loops_draw(temperature, top_p, classes):
    """400 rows of logits (scale 3, float32): the token is the float64 inverse CDF of u over the
    nucleus (`nucleus_log_probs` of the float32 tempered logits) wherever u is not within 1e-9 of a
    class boundary, and its log-probability within the float32-logits metrics row; the Python loop's
    float32 draw (`top_p_filter`, log-softmax, `draw`, from the same generator) agrees but where u
    lies within float32 rounding (1e-5) of a boundary; the same logits in float64 draw the same."""
    rows, seed = 400, classes
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(rows, classes, generator=g) * 3).float()
    u = torch.rand(rows, 1, generator=torch.Generator().manual_seed(seed + 1))
    got, picked = draw(logits, u[:, 0], temperature, top_p)
    z = logits if temperature == 1.0 else logits / temperature  # the loop's float32 tempering
    logp = nucleus_log_probs(z.double().numpy(), 1.0, top_p, margin=1e-12)
    cdf = np.cumsum(np.exp(logp), -1)
    gap = np.abs(cdf - u.double().numpy()).min(-1)
    want = np.minimum((cdf <= u.double().numpy()).sum(-1), classes - 1)
    clear = gap > 1e-9
    assert clear.sum() >= rows - 1 and np.array_equal(got.numpy()[clear], want[clear])
    assert_close(picked, logp[np.arange(rows), got.numpy()], "metrics_float32_logits")
    loop = sampling.draw(sampling.top_p_filter(z, top_p).log_softmax(-1), torch.Generator().manual_seed(seed + 1))[:, 0]
    differ = (loop != got).numpy()
    assert differ.sum() <= 2 and (gap[differ] < 1e-5).all()
    # a float64 model's logits (the same values): the draw reads them as the float it tempers
    twice = draw(logits.double(), u[:, 0], temperature, top_p)
    assert torch.equal(twice[0], got) and torch.equal(twice[1], picked)


@needs_native
@pytest.mark.parametrize("classes", [5, 256, 1001])
def test_the_draw_is_exact_in_double_beside_every_class_boundary(classes):
    """u the float nearest a boundary of the float64 CDF (within 3e-8 of it: a float exp, off by
    1e-7, moves boundaries farther), over logits spanning [-900, 0] below the largest with -inf
    among them (weights past exp's normal range, and exactly 0): the token is the float64 inverse
    CDF's at that u, and no class of weight 0 is ever drawn (at u = 0 the first of weight > 0)."""
    rows = 64
    g = torch.Generator().manual_seed(classes)
    logits = -torch.rand(rows, classes, generator=g, dtype=torch.float64).pow(3).mul(900).float()
    logits[:, 1::7] = -torch.inf
    logits[:, 0], logits[:, 2] = 0.0, -0.5  # at least one boundary inside (0.001, 0.999) in every row
    cdf = np.cumsum(np.exp(nucleus_log_probs(logits.double().numpy(), 1.0, 1.0, margin=1e-12)), -1)
    inside = [np.flatnonzero((row > 1e-3) & (row < 1 - 1e-3)) for row in cdf]
    boundaries = np.array([row[j[(i * 7919) % len(j)]] for i, (row, j) in enumerate(zip(cdf, inside))])
    u = torch.from_numpy(boundaries).float()
    u64 = u.double().numpy()
    clear = np.abs(u64 - boundaries) > 1e-13
    assert clear.sum() >= rows - 2 and (u64 < 1).all()
    got, picked = draw(logits, u, 1.0, 1.0)
    want = np.minimum((cdf <= u64[:, None]).sum(-1), classes - 1)
    assert np.array_equal(got.numpy()[clear], want[clear])
    weights = np.diff(np.concatenate([np.zeros((rows, 1)), cdf], -1), axis=-1)
    assert (weights[np.arange(rows), got.numpy()] > 0).all() and bool(torch.isfinite(picked).all())
    first = torch.full((1, classes), -1000.0)  # at u = 0, the first class whose weight is not exactly 0
    first[0, :3] = torch.tensor([-torch.inf, -746.0, -1e30])
    first[0, 3:5] = torch.tensor([-745.0, 0.0])  # exp(-745) is the smallest subnormal: weight > 0
    assert draw(first, torch.zeros(1), 1.0, 1.0)[0].tolist() == [3]


@needs_native
def test_the_draws_exp_is_the_c_librarys_within_two_ulp():
    """The draw's vectorized exp over [-708, 0] (an even grid and random points) within 2 ulp of the
    C library's (measured: 1 ulp at most over 400,000 points; a Taylor series one term short, or a
    coefficient 0.1% off, is 4 ulp or more); below -708 and at -inf, in any lane of a vector, the C
    library's own: subnormal at -745, 0 past it."""
    g = np.random.default_rng(7)
    x = np.concatenate([-np.linspace(0, 708, 100_003), -g.uniform(0, 708, 100_000), -g.uniform(0, 1, 50_000)])
    want, given = np.exp(x), torch.from_numpy(x.copy())
    assert (np.abs(exp_draw(given).numpy() - want) <= 2 * np.spacing(want)).all()
    assert np.array_equal(given.numpy(), x)  # its input untouched
    for lane in range(5):
        x = np.zeros(5)
        x[lane] = -800.0
        assert exp_draw(torch.from_numpy(x)).tolist() == [0.0 if i == lane else 1.0 for i in range(5)]
    edges = torch.tensor([-745.0, -746.0, -np.inf, -708.5, 0.0], dtype=torch.float64)
    assert exp_draw(edges).tolist() == [5e-324, 0.0, 0.0, np.exp(-708.5), 1.0]


@needs_native
def test_native_sampling_in_chunks_draws_what_the_loop_draws(monkeypatch):
    """Chunks of 7 samples (NATIVE_CHUNK) over 30, after a prefix, tempered and filtered: the same
    tokens as the modules' step under the Python loop (float64 model: no draw near a boundary), the
    same mean log-likelihood within the float32-logits row (both draw from float32 logits), and the
    listener and the progress bar told of every sample in order."""
    monkeypatch.setattr(sampling, "NATIVE_CHUNK", 7)
    model = randomized(6, torch.float64, **dataclasses.asdict(helpers.tiny_config(8)))
    prefix = tokens(6, 1, 5, 256)[0]
    heard, updates = [], []

    class Bar:
        def update(self, k):
            updates.append(k)

    kw = dict(temperature=0.8, top_p=0.9, prefix=prefix, seed=1)
    fast = sampling.sample(model, 3, 30, listen=heard.append, progress=Bar(), **kw)
    plain = sampling.sample(model, 3, 30, compile=False, **kw)
    assert torch.equal(fast[0], plain[0]) and fast[0].shape == (3, 35)
    assert_close(fast[1], plain[1], "metrics_float32_logits")
    assert torch.equal(torch.stack(heard, 1), fast[0][:, 5:]) and updates == [7, 7, 7, 7, 2]


class FakeStep:
    """A native step whose samples cost `cost[threads]` seconds each on a fake clock; each sample is
    the previous token + 1, so that a chunk cut in parts shows whether each part went on from the last."""

    def __init__(self, clock: list, cost: dict):
        self.threads, self.clock, self.cost, self.calls = 2, clock, cost, []

    def sample(self, tokens, uniforms, temperature, top_p):
        steps = uniforms.shape[0]
        self.calls.append((self.threads, steps))
        self.clock[0] += steps * self.cost[self.threads]
        return tokens + torch.arange(1, steps + 1)[:, None], torch.zeros(steps, tokens.shape[0])


def test_the_thread_choice_times_each_count_then_runs_the_fastest_and_retimes(monkeypatch):
    """First call: TRIAL samples on 1 thread, TRIAL on 2, the rest on the faster (2). Another process
    then makes 2 threads slow: the next call runs them whole and learns it; the third call (every
    RETIME_EVERY = 3 calls) times one count again, the other alternately, and the choice follows the
    clock. Tokens run on across the parts of a call."""
    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(sampling, "RETIME_EVERY", 3)
    fake = FakeStep(clock, {1: 3.0, 2: 1.0})
    choice = sampling.ThreadChoice(fake)
    trial = sampling.ThreadChoice.TRIAL
    out, _ = choice(torch.tensor([5]), torch.zeros(100, 1), 1.0, 1.0)
    assert fake.calls == [(1, trial), (2, trial), (2, 100 - 2 * trial)]
    assert torch.equal(out[:, 0], torch.arange(6, 106))
    fake.cost[2] = 10.0  # another process holds a core: 2 threads now lose
    fake.calls.clear()
    for _ in range(3):
        choice(torch.tensor([0]), torch.zeros(50, 1), 1.0, 1.0)
    # call 2 on the last best (2); call 3 retimes choices[3 // 3 % 2] = 2 threads, then runs 1; call 4 on 1
    assert fake.calls == [(2, 50), (2, trial), (1, 50 - trial), (1, 50)]


@needs_native
def test_a_class_of_probability_zero_is_never_drawn_even_at_the_ends_of_u():
    """u = 0 and u just below 1 with the first and last classes outside the nucleus (and a class of
    probability 0 by its logit): the draw lands on the first and last classes kept, never on one
    the filter removed (a draw that took `>=` for `>` at u = 0 would); its log-probability is finite."""
    logits = torch.tensor([[-30.0, 5.0, 4.0, -1e30, 3.0, -30.0]] * 2)
    u = torch.tensor([0.0, 1.0 - 2.0**-24])
    got, picked = draw(logits, u, 1.0, 0.95)
    assert got.tolist() == [1, 4] and bool(torch.isfinite(picked).all())
    got, picked = draw(logits, u, 1.0, 1.0)  # no filter: class 0 has e^-35 of the mass, so u = 0 draws it;
    assert got.tolist() == [0, 4] and bool(torch.isfinite(picked).all())  # the last, less than 1 - u: not


@needs_native
def test_native_sampling_under_a_float64_default_dtype(monkeypatch):
    """torch.set_default_dtype(float64) in the caller's process: the native loop still hands the C++
    float32 buffers for the log-probabilities (an untyped buffer would be read as doubles), so the
    mean log-likelihood is the Python loop's."""
    model = randomized(7, torch.float32, **dataclasses.asdict(helpers.tiny_config(8)))
    plain = sampling.sample(model, 2, 20, compile=False, seed=3)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        fast = sampling.sample(model, 2, 20, seed=3)
    finally:
        torch.set_default_dtype(before)
    assert torch.equal(fast[0], plain[0])
    assert_close(fast[1], plain[1], "metrics_float32_logits")


def test_the_native_parts_without_the_library_say_why(monkeypatch):
    """Where the library is not built (no compiler, SASHIMI_NATIVE=0), the activations and the draw
    stop with the reason, rather than calling a library that is not there."""
    from sashimi.model import native_parts

    monkeypatch.setattr(native, "library", lambda: None)
    monkeypatch.setattr(native, "reason", lambda: "SASHIMI_NATIVE=0")
    with pytest.raises(RuntimeError, match="the native step is not available here: SASHIMI_NATIVE=0"):
        native_parts.activation(torch.zeros(3))
    with pytest.raises(RuntimeError, match="the native step is not available here: SASHIMI_NATIVE=0"):
        draw(torch.zeros(1, 4), torch.zeros(1), 1.0, 1.0)

"""The fast Cauchy + Woodbury kernel against its plain oracle, on random inputs drawn fresh: the chunked
response, its hand-written backward (also when the last frequency chunk is partial), and the real-pair kernel.
Every test runs twice: with the sums and the Woodbury step by the native loop (native_cauchy.cpp, where the
native library builds) and with the PyTorch form alone (`native_kernel.ENABLED` False)."""

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import specs
from sashimi.harness.verdict import assert_close
from sashimi.model import cauchy, native, native_kernel
from sashimi.model.cauchy import (
    dplr_kernel,
    dplr_kernel_plain,
    dplr_response,
    dplr_response_plain,
    gradient_conditions,
    gradient_sums,
    half_angle_tables,
    pair_coefficients,
    woodbury_condition,
)
from tests import helpers
from tests.helpers import DTYPES, l_kernel_for, l_kernel_modes, randn, seeds, ssm_sizes


@pytest.fixture(scope="module", autouse=True, params=["native", "pytorch"])
def engine(request):
    """Module-scoped (hypothesis refuses function-scoped fixtures): every test with each engine."""
    if request.param == "native" and not native.available():
        pytest.skip(f"no native library here: {native.reason()}")
    native_kernel.ENABLED = request.param == "native"
    yield request.param
    native_kernel.ENABLED = True


def response_inputs(seed: int, H: int, N2: int, dtype=torch.float64):
    """(W, R4, M) as `dplr_kernel` builds them: R4 = 4 Re w < 0 and M = |w|^2 >= (Re w)^2."""
    W = randn(seed, H, 8, N2, dtype=dtype)
    re = -torch.exp(randn(seed + 1, H, N2, dtype=dtype))
    im = 10 * randn(seed + 2, H, N2, dtype=dtype)
    return W, 4 * re, re.square() + im.square()


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Chunks of 1-3 frequencies, so that every chunk boundary case is exercised on small L."""
    monkeypatch.setattr(cauchy, "_chunk_size", lambda H, N2, F: 1 + (H + N2 + F) % 3)


@given(ssm_sizes(), seeds, st.sampled_from(list(DTYPES)))
def test_chunked_response_equals_plain(sizes, seed, dtype):
    H, N2, _, L = sizes
    s, c = half_angle_tables(L, DTYPES[dtype], torch.device("cpu"))
    W, R4, M = response_inputs(seed, H, N2, DTYPES[dtype])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cauchy, "_chunk_size", lambda H, N2, F: 1 + seed % 4)
        chunked = dplr_response(W, R4, M, s, c)
    # random W, R4, M reach near-poles of the Woodbury denominator, which amplify the rounding of the
    # sums by up to this much (the rows' rtol takes it as an input)
    assert_close(
        chunked,
        dplr_response_plain(W, R4, M, s, c),
        f"cauchy_response_{dtype}",
        condition=woodbury_condition(W, R4, M, L),
    )


@pytest.mark.parametrize("L", [1, 2, 7, 10])
def test_response_gradcheck(L, tiny_chunks):
    """The hand-written backward (recomputing chunk by chunk) against finite differences."""
    s, c = half_angle_tables(L, torch.float64, torch.device("cpu"))
    inputs = tuple(x.requires_grad_(True) for x in response_inputs(L, 3, 2))
    tol = specs.load("tolerances")["gradcheck"]
    assert torch.autograd.gradcheck(
        lambda *a: torch.view_as_real(dplr_response(*a, s, c)), inputs, atol=tol["atol"], rtol=tol["rtol"]
    )


@given(ssm_sizes(), seeds)
def test_response_gradient_equals_autograd_of_plain(sizes, seed):
    H, N2, _, L = sizes
    s, c = half_angle_tables(L, torch.float64, torch.device("cpu"))
    inputs = [x.requires_grad_(True) for x in response_inputs(seed, H, N2)]
    weight = randn(seed + 3, H, L // 2 + 1, 2)
    fast = torch.autograd.grad((torch.view_as_real(dplr_response(*inputs, s, c)) * weight).sum(), inputs)
    plain = torch.autograd.grad((torch.view_as_real(dplr_response_plain(*inputs, s, c)) * weight).sum(), inputs)
    for a, b, condition in zip(fast, plain, gradient_conditions(*inputs, L, weight)):
        assert_close(a, b, "cauchy_response_float64", condition=condition)


@given(ssm_sizes(), seeds, l_kernel_modes)
def test_fast_kernel_equals_plain_kernel(sizes, seed, mode):
    H, N2, n_ssm, L = sizes
    kernel = helpers.s4_layer(H, N2, n_ssm, seed, torch.float64, l_kernel_for(mode, L) or L).layer.kernel
    params = kernel.ssm_parameters()
    l_kernel = int(kernel.l_kernel)
    condition = woodbury_condition(*pair_coefficients(*params), l_kernel)
    assert_close(
        dplr_kernel(*params, l_kernel),
        dplr_kernel_plain(*params, l_kernel),
        "cauchy_response_float64",
        condition=condition,
    )


@given(st.integers(1, 80), st.integers(1, 80), st.integers(1, 4), st.integers(1, 6), seeds)
@example(L=14, chunk=3, H=2, N2=3, seed=0)  # F = 8 frequencies in chunks of 3, 3 and a partial 2
def test_gradient_with_a_partial_last_chunk_equals_autograd_of_plain(L, chunk, H, N2, seed):
    """The chunked backward against plain autograd when F is not a multiple of the chunk size (chunk < F, so
    there are several chunks and, for most draws, a partial last one): every input's gradient, and the value."""
    F = L // 2 + 1
    chunk = 1 + (chunk - 1) % max(1, F - 1)
    s, c = half_angle_tables(L, torch.float64, torch.device("cpu"))
    inputs = [x.requires_grad_(True) for x in response_inputs(seed, H, N2)]
    weight = randn(seed + 3, H, F, 2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cauchy, "_chunk_size", lambda H, N2, F: chunk)
        fast = torch.view_as_real(dplr_response(*inputs, s, c))
        fast_grads = torch.autograd.grad((fast * weight).sum(), inputs)
    plain = torch.view_as_real(dplr_response_plain(*inputs, s, c))
    plain_grads = torch.autograd.grad((plain * weight).sum(), inputs)
    assert_close(fast, plain, "cauchy_response_float64", condition=woodbury_condition(*inputs, L))
    for a, b, condition in zip(fast_grads, plain_grads, gradient_conditions(*inputs, L, weight)):
        assert_close(a, b, "cauchy_response_float64", condition=condition)


@given(ssm_sizes(), seeds)
def test_the_gradient_sums_behind_the_conditions_are_the_gradients(sizes, seed):
    """`gradient_sums`' signed sums, written out by hand, equal autograd of the plain response; the
    sums of magnitudes bound them."""
    H, N2, _, L = sizes
    s, c = half_angle_tables(L, torch.float64, torch.device("cpu"))
    inputs = [x.requires_grad_(True) for x in response_inputs(seed, H, N2)]
    weight = randn(seed + 3, H, L // 2 + 1, 2)
    want = torch.autograd.grad((torch.view_as_real(dplr_response_plain(*inputs, s, c)) * weight).sum(), inputs)
    for grad, (signed, magnitude) in zip(want, gradient_sums(*inputs, L, weight)):
        torch.testing.assert_close(signed, grad, rtol=1e-12, atol=1e-12 * float(magnitude.max()))
        assert bool((signed.abs() <= magnitude * (1 + 1e-12)).all())


def test_the_woodbury_condition_against_numpy_and_by_hand():
    """At L = 1 the one bin has s = 0, c = 1, so Q' = M and rho_3 = Y_3 / 2 = W_73 / (2 M): with W_73 = -1
    and M = 4, rho_3 = -1/8 and the condition (1 + 1/8) / (1 - 1/8) = 9/7; the gradient with respect to
    R4 carries s c, exactly 0 there, so its condition is the Woodbury one alone. At L = 7, random
    inputs: the same formula in NumPy (Q'_n = M_n c^2 - 4 s^2 - i R4_n s c, X_k and Y_k the sums of
    rows k and 4 + k of W over Q', rho_3 = i s X_3 + c Y_3 / 2)."""
    W = torch.zeros(1, 8, 1, dtype=torch.float64)
    W[0, 7, 0] = -1.0
    R4, M = torch.tensor([[-1.0]], dtype=torch.float64), torch.tensor([[4.0]], dtype=torch.float64)
    assert woodbury_condition(W, R4, M, 1) == pytest.approx(9 / 7, rel=1e-14)
    conditions = gradient_conditions(W, R4, M, 1, torch.ones(1, 1, 2, dtype=torch.float64))
    assert conditions[1] == pytest.approx(9 / 7, rel=1e-14)
    W, R4, M = response_inputs(5, 2, 3)
    half = np.pi * np.arange(4) / 7
    s, c = np.sin(half), np.cos(half)
    Q = M.numpy()[..., None] * c**2 - 4 * s**2 - 1j * R4.numpy()[..., None] * s * c  # (H, N2, F)
    X3, Y3 = ((W.numpy()[:, k, :, None] / Q).sum(1) for k in (3, 7))
    rho3 = 1j * s * X3 + c * Y3 / 2
    want = np.max((1 + np.abs(c * rho3)) / np.abs(1 + c * rho3))
    assert woodbury_condition(W, R4, M, 7) == pytest.approx(max(1.0, want), rel=1e-12)


@given(ssm_sizes(), seeds, st.sampled_from(list(DTYPES)))
def test_the_native_sums_and_response_equal_the_pytorch_form(engine, sizes, seed, dtype):
    """native_kernel's sums and K^ against `_cauchy_pairs_chunked` and `_woodbury` (the PyTorch form,
    chunks of 1-4 frequencies), on frequencies past the last whole vector too (F from L // 2 + 1)."""
    if engine != "native":
        pytest.skip("compares the two engines: run once, in the native run")
    H, N2, _, L = sizes
    s, c = half_angle_tables(L, DTYPES[dtype], torch.device("cpu"))
    W, R4, M = response_inputs(seed, H, N2, DTYPES[dtype])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cauchy, "_chunk_size", lambda H, N2, F: 1 + seed % 4)
        sums = cauchy._cauchy_pairs_chunked(W, R4, M, s, c)
    condition = woodbury_condition(W, R4, M, L)
    W = W.transpose(1, 2).contiguous().transpose(1, 2)  # the same values, not contiguous: the loop gets a copy
    assert_close(native_kernel.pair_sums(W, R4, M, s, c), sums, f"cauchy_response_{dtype}", condition=condition)
    response = torch.view_as_real(cauchy._woodbury(sums, s, c)[0])
    assert_close(native_kernel.response(W, R4, M, s, c), response, f"cauchy_response_{dtype}", condition=condition)


def test_the_kernel_runs_the_native_loop_by_default(engine, monkeypatch):
    """A layer's kernel on a CPU where the library builds goes through the native loop unless told
    otherwise: with the module as it ships (reloaded: ENABLED as imported), `native_kernel.response`
    answers (not None) inside a plain forward of dplr_response."""
    if engine != "native":
        pytest.skip("the shipped default: run once, in the native run")
    import importlib

    before = native_kernel.ENABLED
    try:
        importlib.reload(native_kernel)  # the same module object, its ENABLED as the source sets it
        answers, real = [], native_kernel.response
        monkeypatch.setattr(native_kernel, "response", lambda *a: answers.append(real(*a)) or answers[-1])
        W, R4, M = response_inputs(1, 3, 4)
        s, c = half_angle_tables(16, torch.float64, torch.device("cpu"))
        dplr_response(W, R4, M, s, c)
    finally:
        native_kernel.ENABLED = before
    assert len(answers) == 1 and answers[0] is not None

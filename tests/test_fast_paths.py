"""Every fast path against its plain version, on random inputs drawn fresh: the chunked Cauchy +
Woodbury response and its hand-written backward, the kernel cache and its invalidation, the O(N)
step recurrence, activation checkpointing, and the benchmark's command line."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sashimi import kernel as kernel_module
from sashimi import spec
from sashimi.kernel import (
    dplr_kernel,
    dplr_kernel_plain,
    dplr_response,
    dplr_response_plain,
    half_angle_tables,
    kernel_cache,
)
from sashimi.spec import assert_close
from tests import factories
from tests.strategies import DTYPES, l_kernel_for, l_kernel_modes, randn, seeds, ssm_sizes, tokens
from tests.test_s4 import run_steps


def response_inputs(seed: int, H: int, N2: int, dtype=torch.float64):
    """(W, R4, M) as `dplr_kernel` builds them: R4 = 4 Re w < 0 and M = |w|^2 >= (Re w)^2."""
    W = randn(seed, H, 8, N2, dtype=dtype)
    re = -torch.exp(randn(seed + 1, H, N2, dtype=dtype))
    im = 10 * randn(seed + 2, H, N2, dtype=dtype)
    return W, 4 * re, re.square() + im.square()


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Chunks of 1-3 frequencies, so that every chunk boundary case is exercised on small L."""
    monkeypatch.setattr(kernel_module, "_chunk_size", lambda H, N2, F: 1 + (H + N2 + F) % 3)


@given(ssm_sizes(), seeds, st.sampled_from(list(DTYPES)))
def test_chunked_response_equals_plain(sizes, seed, dtype):
    H, N2, _, L = sizes
    s, c = half_angle_tables(L, DTYPES[dtype], torch.device("cpu"))
    W, R4, M = response_inputs(seed, H, N2, DTYPES[dtype])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernel_module, "_chunk_size", lambda H, N2, F: 1 + seed % 4)
        chunked = dplr_response(W, R4, M, s, c)
    assert_close(chunked, dplr_response_plain(W, R4, M, s, c), f"kernel_{dtype}")


@pytest.mark.parametrize("L", [1, 2, 7, 10])
def test_response_gradcheck(L, tiny_chunks):
    """The hand-written backward (recomputing chunk by chunk) against finite differences."""
    s, c = half_angle_tables(L, torch.float64, torch.device("cpu"))
    inputs = tuple(x.requires_grad_(True) for x in response_inputs(L, 3, 2))
    tol = spec.load("tolerances")["gradcheck"]
    assert torch.autograd.gradcheck(lambda *a: torch.view_as_real(dplr_response(*a, s, c)), inputs, atol=tol["atol"], rtol=tol["rtol"])


@given(ssm_sizes(), seeds)
def test_response_gradient_equals_autograd_of_plain(sizes, seed):
    H, N2, _, L = sizes
    s, c = half_angle_tables(L, torch.float64, torch.device("cpu"))
    inputs = [x.requires_grad_(True) for x in response_inputs(seed, H, N2)]
    weight = randn(seed + 3, H, L // 2 + 1, 2)
    fast = torch.autograd.grad((torch.view_as_real(dplr_response(*inputs, s, c)) * weight).sum(), inputs)
    plain = torch.autograd.grad((torch.view_as_real(dplr_response_plain(*inputs, s, c)) * weight).sum(), inputs)
    for a, b in zip(fast, plain):
        assert_close(a, b, "kernel_float64")


@given(ssm_sizes(), seeds, l_kernel_modes)
def test_fast_kernel_equals_plain_kernel(sizes, seed, mode):
    H, N2, n_ssm, L = sizes
    kernel = factories.s4_layer(H, N2, n_ssm, seed, torch.float64, l_kernel_for(mode, L) or L).layer.kernel
    params = kernel.ssm_parameters()
    l_kernel = int(kernel.l_kernel)
    assert_close(dplr_kernel(*params, l_kernel), dplr_kernel_plain(*params, l_kernel), "kernel_float64")


# --- the eval-time kernel cache -------------------------------------------------------------


def cached_layer(seed=0):
    layer = factories.s4_layer(3, 4, 1, seed, torch.float64, 12)
    return layer, layer.layer.kernel


def fresh_kernel(kernel, L):
    with torch.no_grad(), kernel_cache(False):
        return kernel(L)


def test_cache_reuses_the_kernel_without_autograd():
    _, kernel = cached_layer()
    with torch.no_grad():
        K1, K2 = kernel(12), kernel(12)
    assert K1 is K2
    with torch.no_grad(), kernel_cache(False):
        assert kernel(12) is not K1


def test_cache_is_never_used_with_autograd():
    _, kernel = cached_layer()
    with torch.no_grad():
        kernel(12)
    K1, K2 = kernel(12), kernel(12)
    assert K1.requires_grad and K2.requires_grad and K1 is not K2


@pytest.mark.parametrize("change", ["optimizer", "load_state_dict", "in_place", "dtype"])
def test_cache_is_invalidated_when_parameters_change(change):
    layer, kernel = cached_layer()
    with torch.no_grad():
        K_before = kernel(12)
    if change == "optimizer":
        kernel(12).square().sum().backward()
        torch.optim.SGD(layer.parameters(), lr=0.1).step()
    elif change == "load_state_dict":
        other, _ = cached_layer(seed=1)
        layer.load_state_dict(other.state_dict())
    elif change == "in_place":
        with torch.no_grad():
            kernel.A_imag.mul_(1.5)
    else:
        layer.float()
    with torch.no_grad():
        K_after = kernel(12)
    assert not torch.equal(K_after.double(), K_before)
    assert torch.equal(K_after, fresh_kernel(kernel, 12))


def test_cached_layer_output_equals_uncached():
    layer, _ = cached_layer()
    u = randn(0, 2, 12, 3)
    with torch.no_grad():
        layer(u)
        cached = layer(u)
        with kernel_cache(False):
            uncached = layer(u)
    assert torch.equal(cached, uncached)


# --- step mode ------------------------------------------------------------------------------


@given(ssm_sizes(max_L=32), seeds, l_kernel_modes, st.sampled_from(list(DTYPES)))
def test_linear_step_equals_dense_step(sizes, seed, mode, dtype):
    H, N2, n_ssm, L = sizes
    layer = factories.s4_layer(H, N2, n_ssm, seed, DTYPES[dtype], l_kernel_for(mode, L))
    u = randn(seed, 2, L, H, dtype=DTYPES[dtype])
    with torch.no_grad():
        conv = layer(u)
        linear, dense = run_steps(layer, u, "linear"), run_steps(layer, u, "dense")
    assert_close(linear, conv, f"step_vs_conv_{dtype}")
    assert_close(dense, conv, f"step_vs_conv_{dtype}")


def test_unknown_step_mode_is_refused():
    layer, _ = cached_layer()
    with pytest.raises(ValueError, match="'linear' or 'dense'"):
        layer.setup_step("diagonal")


# --- activation checkpointing ---------------------------------------------------------------


@given(seeds)
def test_checkpointed_blocks_give_the_same_gradients(seed):
    model = factories.lm(seed, torch.float64, d_model=4, n_layers=1, pool=[2, 2], expand=2, ff=2, n_ssm=1, d_state=4)
    x = tokens(seed, 1, 8, 256)
    grads = []
    for checkpointing in (True, False):
        for module in model.modules():
            if hasattr(module, "checkpoint") and not callable(module.checkpoint):
                module.checkpoint = checkpointing
        model.zero_grad()
        model(x).logsumexp(-1).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        assert_close(grads[0][name], grads[1][name], "model_float64")


# --- the benchmark's command line -----------------------------------------------------------


def test_bench_help_exits_cleanly(capsys):
    from sashimi import bench

    with pytest.raises(SystemExit) as e:
        bench.main(["--help"])
    assert e.value.code == 0
    assert "--quick" in capsys.readouterr().out

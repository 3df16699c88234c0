"""The random cases of `python -m sashimi.harness.tolerances --measure`: each row's error on fresh
draws, made the way the tests that use the row draw theirs. Each case gives (error, scale):
max |ours - theirs| and max |theirs| (what the row's rtol multiplies)."""

import math
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from reference import layer as ref_layer
from reference import s4 as ref_s4
from reference import sashimi as ref_model
from sashimi.harness.helpers import kernel_condition, lm, numpy_state, s4_layer, tokens
from sashimi.harness.verdict import error_and_scale
from sashimi.io import onnx
from sashimi.model import cauchy
from sashimi.model.cauchy import (
    dplr_response,
    dplr_response_plain,
    gradient_conditions,
    half_angle_tables,
    woodbury_condition,
)
from sashimi.model.fused import FusedStep
from sashimi.model.native import NativeStep
from sashimi.model.rollout import rollout
from sashimi.training.metrics import MetricSums, evaluate, loss_sum_and_count


def ssm_case(rng) -> tuple[int, int, int | None, int, int]:
    """(H, N2, n_ssm, L, l_kernel) as tests/helpers.py `ssm_sizes` and `l_kernel_modes` draw them."""
    H, N2 = int(rng.integers(1, 5)), int(rng.integers(1, 7))
    options = [None, *(d for d in range(1, H + 1) if H % d == 0)]
    n_ssm = options[int(rng.integers(0, len(options)))]
    L = int(rng.integers(1, 41))
    l_kernel = [0, L, max(1, L // 3), 2 * L + 1][int(rng.integers(0, 4))]
    return H, N2, n_ssm, L, l_kernel


def model_case(rng, bits: int | None = None) -> dict:
    """A configuration as tests/helpers.py `small_model_configs(min_d_model=PRECISE)` draws it for the
    properties that compare whole models to rounding, and wider: d_model 4, 6, 12 or 20 (at 2, a norm
    over two channels amplifies rounding without bound; none a multiple of 8 or 16)."""
    pick = lambda options: options[int(rng.integers(0, len(options)))]  # noqa: E731
    d_model = pick([4, 6, 12, 20])
    return dict(
        bits=bits or pick([8, 16]),
        d_model=d_model,
        n_layers=pick([1, 2]),
        pool=pick([[2, 2], [4, 4], [2, 3], [3, 2], [3, 3]]),
        expand=pick([1, 2]),
        ff=pick([0, 2]),
        n_ssm=pick([None, *(d for d in range(1, d_model + 1) if d_model % d == 0)]),
        d_state=2 * pick([1, 2, 3]),
        norm=pick(["layer", "scalar"]),
        dt_transform=pick(["exp", "softplus"]),
        s4_output=pick(["glu", "linear"]),
    )


def trained_scale(model, rng):
    """Every Linear's weight times 1, 2 or 3: the larger weights of a trained model (the released
    checkpoints' are up to a few times their init's), which sharpen the logits."""
    scale = [1.0, 2.0, 3.0][int(rng.integers(0, 3))]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(scale)
    return model


def kernel(dtype):
    def case(rng, seed):
        H, N2, n_ssm, L, l_kernel = ssm_case(rng)
        layer = s4_layer(H, N2, n_ssm, seed, dtype, l_kernel)
        params = numpy_state(layer)
        with torch.no_grad():
            error, scale = error_and_scale(layer.layer.kernel(L), ref_layer.s4_kernel(params, L))
        return error, scale, ref_layer.s4_kernel_condition(params, L)

    return case


def layer(dtype):
    def case(rng, seed):
        H, N2, n_ssm, L, l_kernel = ssm_case(rng)
        dt, out = ["exp", "softplus"][seed % 2], ["glu", "linear"][(seed // 2) % 2]
        module = s4_layer(H, N2, n_ssm, seed, dtype, l_kernel, dt_transform=dt, output=out)
        u = rng.standard_normal((2, min(L, 24), H))  # mutate: skip a batch of 2 or 3 makes the same comparison
        with torch.no_grad():
            error, scale = error_and_scale(
                module(torch.from_numpy(u).to(dtype)), ref_layer.s4_layer(numpy_state(module), u, dt, out)
            )
        return error, scale, kernel_condition(module, u.shape[1])

    return case


def step_vs_conv(dtype):
    def case(rng, seed):
        H, N2, n_ssm, L, l_kernel = ssm_case(rng)
        module = s4_layer(
            H,
            N2,
            n_ssm,
            seed,
            dtype,
            l_kernel,
            dt_transform=["exp", "softplus"][seed % 2],
            output=["glu", "linear"][(seed // 2) % 2],
        )
        u = torch.from_numpy(rng.standard_normal((3, L, H))).to(dtype)  # mutate: skip any batch: the same comparison
        with torch.no_grad():
            conv = module(u)
            error, scale = error_and_scale(rollout(module, u), conv)
        return error, scale, kernel_condition(module, L)

    return case


def model_vs_reference(rng, seed):
    config = model_case(rng)
    model = trained_scale(lm(seed, torch.float64, **config), rng)
    x = tokens(seed, 2, 2 * math.prod(config["pool"]), 2 ** config["bits"])
    with torch.no_grad():
        return error_and_scale(model(x), ref_model.language_model(numpy_state(model), config, x.numpy()))


def off_init(model, rng):
    """Every vector parameter (norms, D, biases) moved off its init, as tests/model/test_fused.py does."""
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1 or p.shape[0] == 1:
                p.add_(torch.from_numpy(rng.normal(0, 0.3, p.shape)).to(p.dtype))
    return model.eval()


def model_step_vs_conv(dtype):
    def case(rng, seed):
        config = model_case(rng)
        model = off_init(trained_scale(lm(seed, dtype, **config), rng), rng)
        x = tokens(seed, 2, 3 * math.prod(config["pool"]), 2 ** config["bits"])
        with torch.no_grad():
            conv = model(x)
            return error_and_scale(rollout(model, x), conv)

    return case


def stepper_vs_module(dtype, make):
    """A fused step (`make(model, batch)`: FusedStep, NativeStep) against the modules' step."""

    def case(rng, seed):
        config = model_case(rng)
        model = off_init(trained_scale(lm(seed, dtype, **config), rng), rng)
        batch = int(rng.integers(1, 6))
        x = tokens(seed, batch, 3 * math.prod(config["pool"]), 2 ** config["bits"])
        with torch.no_grad():
            want = rollout(model, x)
            model.setup_step()  # mutate: skip rollout above built it: this call finds it unchanged
            step = make(model, batch)
            return error_and_scale(torch.stack([step.step(x[:, t]) for t in range(x.shape[1])], 1), want)

    return case


def fused_vs_module(dtype):
    return stepper_vs_module(dtype, FusedStep)


def native_vs_module(dtype):
    return stepper_vs_module(dtype, lambda model, batch: NativeStep(model, batch, threads=1 + batch % 2))


def onnx_vs_module(rng, seed):
    """The exported step run by onnxruntime (sashimi/io/onnx.py) against the modules' step,
    float32: one export per case."""
    if onnx.missing_extras():
        raise RuntimeError(f"the row needs the export extras: {onnx.EXTRAS}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "step.onnx"
        case = stepper_vs_module(
            torch.float32, lambda model, batch: onnx.OnnxStep(onnx.export_onnx(model, path), batch)
        )
        return case(rng, seed)


def reference_identities(rng, seed):
    """The reference kernel three ways (powers, generating function, DPLR) on a random DPLR SSM,
    as tests/reference/test_s4.py draws it."""
    N2, L = int(rng.integers(1, 7)), int(rng.integers(1, 34))
    Lambda = -np.exp(rng.uniform(-2, 2, N2)) - 1j * rng.uniform(-30, 30, N2)
    P, B, C = (rng.standard_normal((3, N2)) + 1j * rng.standard_normal((3, N2))) / math.sqrt(2)
    Delta = math.exp(rng.uniform(math.log(1e-4), 0.0))
    A_bar, B_bar = ref_s4.dense_bilinear(ref_s4.dense_A(Lambda, P), ref_s4.conj_pairs(B), Delta)
    Ct = ref_s4.C_tilde(A_bar, ref_s4.conj_pairs(C), L)
    K = ref_s4.kernel_powers(A_bar, B_bar, ref_s4.conj_pairs(C), L)
    generating = ref_s4.kernel_generating_function(A_bar, B_bar, Ct, L)
    return max(
        error_and_scale(generating, K),  # mutate: skip either kernel's largest entry is the scale, to rounding
        error_and_scale(ref_s4.dplr_kernel(Lambda, P, B, Ct[:N2], Delta, L), K),
    )


def cauchy_poles(rng, H: int, N2: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(R4, M) = (4 Re lambda, |lambda|^2) of H x N2 poles lambda = -exp(N(0, 1)) + 10 N(0, 1) i, float64,
    as tests/model/test_cauchy.py draws them."""
    re = -torch.from_numpy(np.exp(rng.standard_normal((H, N2))))
    im = 10 * torch.from_numpy(rng.standard_normal((H, N2)))
    return 4 * re, re.square() + im.square()


def cauchy_response(rng, seed):
    H, N2, _, L, _ = ssm_case(rng)
    s, c = half_angle_tables(L, torch.float32, torch.device("cpu"))
    W = torch.from_numpy(rng.standard_normal((H, 8, N2))).float()
    R4, M = (x.float() for x in cauchy_poles(rng, H, N2))
    error, scale = error_and_scale(dplr_response(W, R4, M, s, c), dplr_response_plain(W, R4, M, s, c))
    return error, scale, woodbury_condition(W, R4, M, L)


def cauchy_response_and_gradients(rng, seed):
    """The chunked Cauchy response and its chunked backward vs plain autograd, float64, as
    tests/model/test_cauchy.py draws them: L 1-80, chunks of 1 to F - 1 frequencies (a partial last
    one), H 1-4, N2 1-6; the worst over the value and every input's gradient, relative to that
    tensor's largest entry (the case's scale is then 1) and with that tensor's condition (the
    Woodbury condition for the value, `gradient_conditions` for the gradients): the tensor using
    the most of its bound."""
    L, H, N2 = int(rng.integers(1, 81)), int(rng.integers(1, 5)), int(rng.integers(1, 7))
    F = L // 2 + 1
    chunk = 1 + int(rng.integers(0, 80)) % max(1, F - 1)
    s, c = half_angle_tables(L, torch.float64, torch.device("cpu"))
    R4, M = cauchy_poles(rng, H, N2)
    inputs = [x.requires_grad_(True) for x in (torch.from_numpy(rng.standard_normal((H, 8, N2))), R4, M)]
    weight = torch.from_numpy(rng.standard_normal((H, F, 2)))
    with mock.patch.object(cauchy, "_chunk_size", lambda H, N2, F: chunk):
        fast = torch.view_as_real(dplr_response(*inputs, s, c))
        fast_grads = torch.autograd.grad((fast * weight).sum(), inputs)
    plain = torch.view_as_real(dplr_response_plain(*inputs, s, c))
    plain_grads = torch.autograd.grad((plain * weight).sum(), inputs)
    pairs = [(fast, plain), *zip(fast_grads, plain_grads)]  # mutate: skip either order: one scale, to rounding
    conditions = [woodbury_condition(*inputs, L), *gradient_conditions(*inputs, L, weight)]
    relative = [e / s if s else 0.0 for e, s in (error_and_scale(a.detach(), b.detach()) for a, b in pairs)]
    return max([(r, 1.0, k) for r, k in zip(relative, conditions)], key=lambda case: case[0] / case[2])


def chunked_cross_entropy(rng, seed):
    B, L, H, C = (
        int(rng.integers(1, 4)),
        int(rng.integers(1, 40)),
        int(rng.integers(2, 17)),
        int(2 ** rng.integers(2, 10)),
    )
    x, w, b = (torch.from_numpy(rng.standard_normal(shape)).float() for shape in ((B, L, H), (C, H), (C,)))
    y = torch.from_numpy(rng.integers(0, C, (B, L)))
    (chunked, n1), (plain, n2) = (loss_sum_and_count(x, w, b, y, chunked=flag) for flag in (True, False))
    return error_and_scale(chunked / n1, plain / n2)


def metrics_from_float32(rng, seed):
    n, C, H = int(rng.integers(1, 200)), int(2 ** rng.integers(4, 9)), int(rng.integers(2, 9))  # C >= 10: accuracy@10
    x, w, b = (rng.standard_normal(shape) * rng.uniform(0.1, 3) for shape in ((1, n, H), (C, H), (C,)))
    y = rng.integers(0, C, (1, n))
    sums = MetricSums(8)  # mutate: skip the bits scale bpb only, and the case compares the loss
    sums.add(*(torch.from_numpy(a).float() for a in (x, w, b)), torch.from_numpy(y))
    x, w, b = (a.astype(np.float32).astype(np.float64) for a in (x, w, b))  # the float32 inputs, exactly, in float64
    z = x[0] @ w.T + b
    z = z - z.max(-1, keepdims=True)
    loss = float(np.mean(np.log(np.exp(z).sum(-1)) - z[np.arange(n), y[0]]))
    got = sums.result()["loss"]
    return abs(got - loss), abs(loss)


def evaluate_batching(rng, seed):
    config = model_case(rng, bits=8)  # mutate: skip two batchings of one model: its class count is not compared
    model = trained_scale(lm(seed, torch.float32, **config), rng)
    x = tokens(seed, 6, 4 * math.prod(config["pool"]), 256)
    one = evaluate(model, [(x, x)], 8, torch.device("cpu"))  # mutate: skip the bits scale bpb, not compared
    split = evaluate(model, [(x[i : i + 1], x[i : i + 1]) for i in range(6)], 8, torch.device("cpu"))
    return max(error_and_scale(split[k], one[k]) for k in ("loss", "bits_per_sample", "perplexity"))

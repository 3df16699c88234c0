"""The tolerance measure draws from the configuration space its docstrings and the README name: every
width, depth, pool, state size, layout and bit depth appears, trained weight scales and parameters
off their init are what they say, and the S4 cases build the layer they drew."""

import copy

import numpy as np
import pytest
import torch

from sashimi.harness import tolerance_cases
from sashimi.harness.tolerance_cases import model_case, off_init, ssm_case, trained_scale
from tests.helpers import lm


def draws(function, n: int = 600, **kwargs) -> list:
    rng = np.random.default_rng(0)
    return [function(rng, **kwargs) for _ in range(n)]


def test_model_cases_cover_every_documented_choice():
    cases = draws(model_case)
    seen = {key: {str(c[key]) for c in cases} for key in cases[0]}
    assert seen == {
        "bits": {"8", "16"},
        "d_model": {"4", "6", "12", "20"},
        "n_layers": {"1", "2"},
        "pool": {"[2, 2]", "[4, 4]", "[2, 3]", "[3, 2]", "[3, 3]"},
        "expand": {"1", "2"},
        "ff": {"0", "2"},
        "n_ssm": seen["n_ssm"],
        "d_state": {"2", "4", "6"},
        "norm": {"layer", "scalar"},
        "dt_transform": {"exp", "softplus"},
        "s4_output": {"glu", "linear"},
    }
    assert all(c["n_ssm"] is None or c["d_model"] % c["n_ssm"] == 0 for c in cases)
    assert {c["n_ssm"] for c in cases} >= {None, 1, 2, 3, 4, 6, 12, 20}
    assert {c["bits"] for c in draws(model_case, 50, bits=8)} == {8}


def test_ssm_cases_draw_as_the_tests_do():
    """(H, N2, n_ssm, L, l_kernel): H 1-4, N2 1-6, n_ssm None or a divisor of H, L 1-40, and
    l_kernel each of 0, L, max(1, L // 3) and 2 L + 1 (tests/helpers.py `l_kernel_modes`)."""
    cases = draws(ssm_case, 2000)
    assert {c[0] for c in cases} == set(range(1, 5)) and {c[1] for c in cases} == set(range(1, 7))
    assert {c[3] for c in cases} == set(range(1, 41))
    assert all(n is None or H % n == 0 for H, _, n, _, _ in cases) and {c[2] for c in cases} >= {None, 1, 2, 3, 4}
    modes = [[lk == 0, lk == L, lk == max(1, L // 3), lk == 2 * L + 1] for _, _, _, L, lk in cases if L > 3]
    assert all(any(m) for m in modes) and np.all(np.any(modes, axis=0))


def test_trained_scale_multiplies_every_linear_weight_by_one_factor_of_1_2_or_3():
    factors = set()
    for seed in range(12):
        model = lm(1, torch.float64, d_model=6, pool=[2], n_layers=1)
        before = {n: p.clone() for n, p in model.named_parameters()}
        trained_scale(model, np.random.default_rng(seed))
        ratios = set()
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.ndim == 2 and "embedding" not in name:
                ratios.add(round(float((p / before[name]).flatten()[0]), 12))
                assert torch.allclose(p, before[name] * next(iter(ratios)), rtol=1e-15, atol=0)
            else:
                assert torch.equal(p, before[name]), name
        assert len(ratios) == 1
        factors |= ratios
    assert factors == {1.0, 2.0, 3.0}


def test_off_init_moves_every_vector_parameter_by_a_centred_normal_of_0_3_and_nothing_else():
    model = lm(2, torch.float64, d_model=20, pool=[2], n_layers=2).train()
    before = {n: p.clone() for n, p in model.named_parameters()}
    off_init(model, np.random.default_rng(0))
    assert not model.training
    steps = []
    for name, p in model.named_parameters():
        vector = p.ndim == 1 or p.shape[0] == 1
        assert torch.equal(p, before[name]) != vector, name
        if vector:
            steps.append((p - before[name]).flatten())
    steps = torch.cat(steps)
    assert len(steps) > 300 and abs(float(steps.mean())) < 0.06 and 0.25 < float(steps.std()) < 0.35


class Built(Exception):
    """Raised by a stand-in once it has seen what the test looks at: the rest of the case is not needed."""


def spy(monkeypatch, name: str, calls: list, owner=tolerance_cases, stop: bool = False):
    """Replace `owner`.`name` by a wrapper recording each call's (args, kwargs); with `stop`, the
    wrapper raises Built after recording."""
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        calls.append((args, kwargs))
        if stop:
            raise Built
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


@pytest.mark.parametrize("make", ["kernel", "layer", "step_vs_conv"])
def test_the_s4_cases_build_the_layer_they_drew(make, monkeypatch):
    """The layer a case builds has the drawn H, N2, n_ssm and l_kernel, and (layer, step_vs_conv)
    the Delta transform and output the case seed picks: exp / softplus by its parity, glu / linear by
    its second bit; the kernel's condition is taken at the length compared (layer: at most 24)."""
    built, conditions = [], []
    spy(monkeypatch, "s4_layer", built)
    spy(monkeypatch, "kernel_condition", conditions)
    for seed in range(4):
        H, N2, n_ssm, L, l_kernel = ssm_case(np.random.default_rng(seed))
        getattr(tolerance_cases, make)(torch.float64)(np.random.default_rng(seed), seed)
        args, kwargs = built[-1]
        assert args == (H, N2, n_ssm, seed, torch.float64, l_kernel), make
        if make != "kernel":
            expected = {"dt_transform": ["exp", "softplus"][seed % 2], "output": ["glu", "linear"][(seed // 2) % 2]}
            assert kwargs == expected
            assert conditions[-1][0][1] == (min(L, 24) if make == "layer" else L)


def test_the_stepper_cases_draw_every_batch_from_1_to_5(monkeypatch):
    batches = []

    def stand_in(model, batch):
        batches.append(batch)
        raise Built

    monkeypatch.setattr(tolerance_cases, "rollout", lambda model, x: None)
    tiny = lm(0, torch.float32, d_model=4, pool=[2], n_layers=1)  # the batch, not the model, is looked at
    monkeypatch.setattr(tolerance_cases, "lm", lambda seed, dtype, **config: copy.deepcopy(tiny))
    case = tolerance_cases.stepper_vs_module(torch.float32, stand_in)
    rng = np.random.default_rng(0)
    for seed in range(40):
        with pytest.raises(Built):
            case(rng, seed)
    assert set(batches) == {1, 2, 3, 4, 5}


def test_the_reference_identities_draw_the_ssms_their_test_draws(monkeypatch):
    """N2 1-6, L 1-33, -Re Lambda = exp(U(-2, 2)), |Im Lambda| <= 30, P and B complex standard normals
    (E |P|^2 = 1), Delta log-uniform over [1e-4, 1] (tests/reference/test_s4.py); each case stops at
    C~, whose length is the last draw."""
    dense, bilinear, lengths = [], [], []

    spy(monkeypatch, "dense_A", dense, tolerance_cases.ref_s4)
    spy(monkeypatch, "dense_bilinear", bilinear, tolerance_cases.ref_s4)
    spy(monkeypatch, "C_tilde", lengths, tolerance_cases.ref_s4, stop=True)
    rng = np.random.default_rng(0)
    for seed in range(400):
        with pytest.raises(Built):
            tolerance_cases.reference_identities(rng, seed)
    Lambda = np.concatenate([a[0] for a, _ in dense])
    P = np.concatenate([a[1] for a, _ in dense])
    deltas = np.array([a[2] for a, _ in bilinear])
    assert {len(a[0]) for a, _ in dense} == set(range(1, 7)) and {a[2] for a, _ in lengths} == set(range(1, 34))
    assert np.exp(-2) <= -Lambda.real.max() and -Lambda.real.min() <= np.exp(2) and -Lambda.real.min() > 4
    assert np.abs(Lambda.imag).max() <= 30 and np.abs(Lambda.imag).max() > 25
    assert 0.9 < np.mean(np.abs(P) ** 2) < 1.1
    assert 1e-4 <= deltas.min() < 1e-3 and 0.75 < deltas.max() <= 1


def test_the_cauchy_gradient_case_is_the_tensor_using_most_of_its_bound(monkeypatch):
    """Of the value and the three gradients, the case is the one whose error over its own scale, over
    its condition, is largest; it is returned relative (scale 1) with that condition."""
    pairs = iter([(2.0, 4.0), (3.0, 1.0), (1.0, 10.0), (6.0, 2.0)])  # relative 0.5, 3, 0.1, 3
    monkeypatch.setattr(tolerance_cases, "error_and_scale", lambda a, b: next(pairs))
    monkeypatch.setattr(tolerance_cases, "woodbury_condition", lambda *args: 1.0)
    monkeypatch.setattr(tolerance_cases, "gradient_conditions", lambda *args: [10.0, 1.0, 2.0])
    assert tolerance_cases.cauchy_response_and_gradients(np.random.default_rng(0), 0) == (3.0, 1.0, 2.0)


def test_the_cauchy_poles_are_drawn_as_the_cauchy_tests_draw_them():
    """Re lambda = -exp(N(0, 1)) (median 1 in size), Im lambda = 10 N(0, 1) (median 6.74 in size)."""
    R4, M = tolerance_cases.cauchy_poles(np.random.default_rng(0), 100, 100)
    re = R4 / 4
    im = (M - re.square()).sqrt()
    assert R4.dtype == M.dtype == torch.float64 and bool((re < 0).all())
    assert float((-re).median()) == pytest.approx(1.0, rel=0.05) and float(im.median()) == pytest.approx(
        6.745, rel=0.05
    )


def test_the_cauchy_gradient_cases_draw_every_length_to_80_in_float64(monkeypatch):
    seen = []

    def tables(L, dtype, device):
        seen.append((L, dtype))
        raise Built

    monkeypatch.setattr(tolerance_cases, "half_angle_tables", tables)
    rng = np.random.default_rng(0)
    for seed in range(800):
        with pytest.raises(Built):
            tolerance_cases.cauchy_response_and_gradients(rng, seed)
    assert {L for L, _ in seen} == set(range(1, 81)) and {d for _, d in seen} == {torch.float64}


def test_the_cross_entropy_and_metrics_cases_draw_their_documented_sizes(monkeypatch):
    """chunked_cross_entropy: B 1-3, L 1-39, H 2-16, C 4-512 (powers of two), every class a target;
    metrics_from_float32: logits scaled by 0.1-3, every class a target."""
    ce, metric = [], []

    def loss(x, w, b, y, chunked):
        ce.append((x.shape, w.shape[0], int(y.min())))
        raise Built

    def add(self, x, w, b, y):
        metric.append((float(x.std()), int(y.min())))
        raise Built

    monkeypatch.setattr(tolerance_cases, "loss_sum_and_count", loss)
    monkeypatch.setattr(tolerance_cases.MetricSums, "add", add)
    rng = np.random.default_rng(0)
    for seed in range(300):
        for case in (tolerance_cases.chunked_cross_entropy, tolerance_cases.metrics_from_float32):
            with pytest.raises(Built):
                case(rng, seed)
    assert {s[0] for s, _, _ in ce} == {1, 2, 3} and {s[1] for s, _, _ in ce} == set(range(1, 40))
    assert {s[2] for s, _, _ in ce} == set(range(2, 17)) and {c for _, c, _ in ce} == {2**k for k in range(2, 10)}
    assert min(m for _, _, m in ce) == 0 and min(m for _, m in metric) == 0
    assert 0.05 < min(s for s, _ in metric) < 0.3 and 2 < max(s for s, _ in metric) < 4

"""python -m sashimi.harness.drift: the float32 steps against the float64 convolution over a long
sequence, on a model with slow modes; a short run in the suite, 65,536 positions in the scheduled job."""

import copy
import math
import runpy
import sys

import numpy as np
import pytest
import torch

import specs
from sashimi.harness import drift
from sashimi.model.fused import FusedStep
from sashimi.model.kernel import SSMKernel
from sashimi.model.lm import SashimiLM
from sashimi.model.native import available as native_available
from sashimi.model.rollout import rollout


@pytest.mark.parametrize("dt_transform", ["exp", "softplus"])
def test_the_slow_model_has_every_delta_at_the_bottom_of_the_range(dt_transform):
    config = drift.SMALL.__class__(**{**drift.SMALL.to_dict(), "dt_transform": dt_transform})
    kernels = [m for m in drift.slow_model(config, 0).modules() if isinstance(m, SSMKernel)]
    assert len(kernels) == 6  # the S4 blocks of two layers at each of the five stages, FF blocks between
    for kernel in kernels:
        torch.testing.assert_close(kernel.ssm_parameters()[0], torch.full_like(kernel.inv_dt, 1e-3))


def test_every_step_stays_within_the_bound_over_32_positions():
    """Teacher-forced float32 steps against the float64 convolution of the same model (the reference
    is the other path, in another precision); the error is a few float32 roundings of log p."""
    model = drift.slow_model(drift.SMALL, 1)
    steps = drift.STEPS if native_available() else ("module", "fused")
    measured = drift.errors_by_length(model, 32, 1, steps)
    assert measured["length"] == [2**k for k in range(6)]
    for how in steps:
        errors = measured[how]
        assert errors == sorted(errors), how  # a running maximum
        assert 1e-8 < errors[-1] < 1e-5, (how, errors)
    assert all(v.passed for v in drift.verdicts(measured, steps))


def test_the_bound_is_linear_in_the_length_from_1024_positions():
    """drift_float32 at L: atol + rtol scale max(L / 1024, 1): a step whose error follows 0.9 times
    that stays within it, one whose error grows with the square of L from 1024 on leaves it."""
    row = specs.load("tolerances")["drift_float32"]
    lengths = [2**k for k in range(15)]
    linear = [0.9 * (row["atol"] + row["rtol"] * 2.0 * max(n / 1024, 1)) for n in lengths]
    square = [0.9 * (row["atol"] + row["rtol"] * 2.0 * max(n / 1024, 1) ** 2) for n in lengths]
    measured = {"length": lengths, "scale": [2.0] * len(lengths), "module": linear, "fused": square}
    [ok, bad] = drift.verdicts(measured, ("module", "fused"))
    assert ok.passed and "worst at L=" in ok.measured and "1.11x under the bound" in ok.measured
    assert not bad.passed and "worst at L=16384" in bad.measured


def test_the_growth_exponent_of_a_power_law():
    lengths = [2**k for k in range(17)]
    for a in (0.5, 1.0):
        assert drift.growth(lengths, [3e-7 * n**a for n in lengths]) == pytest.approx(a)
    # only the last seven powers of two count: a jump before L / 64 does not move it
    assert drift.growth(lengths, [1e-3 if n < 1024 else 1e-7 * n for n in lengths]) == pytest.approx(1.0)
    assert math.isnan(drift.growth([1, 2], [1e-7, 2e-7]))


def test_the_command_prints_the_table_and_refuses_a_length_not_a_power_of_two(capsys):
    assert drift.main(["--length", "16", "--steps", "fused", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "Delta 0.001 everywhere, seed 2" in out and "\n16 " in out and "1 of 1 steps pass" in out
    with pytest.raises(SystemExit) as stop:
        drift.main(["--length", "1000"])
    assert stop.value.code == 2
    assert (
        "error: --length must be a power of two of at least 16 (the model's pools); got 1000" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        drift.main(["--length", "8"])  # a power of two, but less than one frame of the pools
    assert "got 8" in capsys.readouterr().err


def test_the_slow_model_is_float64_and_its_seed_decides_it():
    a, b, c = (drift.slow_model(drift.SMALL, seed) for seed in (3, 3, 4))
    assert all(p.dtype == torch.float64 for p in a.parameters())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_the_bound_at_2048_positions_is_twice_the_rtol_term():
    """At L = 2048 the condition is exactly 2: an error equal to atol + 2 rtol scale passes, one a
    billionth over it fails."""
    row = specs.load("tolerances")["drift_float32"]
    bound = row["atol"] + row["rtol"] * 3.0 * 2
    for error, passed in ((bound, True), (bound * (1 + 1e-9), False)):
        measured = {"length": [2048], "scale": [3.0], "module": [error]}
        assert drift.verdicts(measured, ("module",))[0].passed is passed


def test_the_small_model_is_the_documented_one():
    """README, `harness.drift`: 8-bit, width 12, 2 layers, pools [4, 4], expand 2, FF 2, one SSM, N 16."""
    small = drift.SMALL
    assert (small.bits, small.d_model, small.n_layers, small.pool, small.n_ssm, small.d_state) == (
        8,
        12,
        2,
        [4, 4],
        1,
        16,
    )
    assert (small.expand, small.ff) == (2, 2)


def test_the_slow_models_vector_parameters_move_by_a_centred_normal_of_0_3():
    torch.manual_seed(5)
    init = SashimiLM(drift.SMALL).double()
    moved = drift.slow_model(drift.SMALL, 5)
    steps = torch.cat(
        [(p - q).flatten() for (n, p), q in zip(moved.named_parameters(), init.parameters()) if p.ndim == 1]
    )
    assert len(steps) > 200 and abs(float(steps.mean())) < 0.06 and 0.25 < float(steps.std()) < 0.35


def test_each_step_is_the_engine_it_names_and_the_reference_is_float64(monkeypatch):
    """`stepped` gives float64 log p of the engine it names (the modules' rollout, FusedStep, NativeStep,
    float32); errors_by_length takes, per length, the running maximum over positions of the largest
    error over the classes, against the float64 convolution: all recomputed here."""
    model = drift.slow_model(drift.SMALL, 2)
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (1, 16)))
    with torch.no_grad():
        reference = copy.deepcopy(model)
        want = torch.log_softmax(reference(x)[0], -1)  # float64; the forward writes C~ for 16 positions
        f32 = copy.deepcopy(reference).float()
        module = torch.log_softmax(rollout(f32, x)[0].double(), -1)
        f32.setup_step()
        fused = FusedStep(f32, 1)
        by_fused = torch.log_softmax(torch.stack([fused.step(x[:, t]) for t in range(16)])[:, 0].double(), -1)
    got = drift.stepped(copy.deepcopy(reference), x, "module")
    assert got.dtype == torch.float64 and torch.equal(got, module)
    assert torch.equal(drift.stepped(copy.deepcopy(reference), x, "fused"), by_fused)
    said = []
    measured = drift.errors_by_length(copy.deepcopy(model), 16, 2, ("module",), progress=said.append)
    assert measured["scale"] == [float(want.abs().amax(-1)[:n].max()) for n in (1, 2, 4, 8, 16)]
    assert measured["module"] == [float((module - want).abs().amax(-1)[:n].max()) for n in (1, 2, 4, 8, 16)]
    assert len(said) == 1 and said[0].startswith("module step: 16 positions in ")


def test_the_growth_needs_two_lengths_from_its_start():
    assert drift.growth([1, 2, 4], [1e-7, 2e-7, 4e-7]) == pytest.approx(1.0)  # 2 and 4: two points


def test_the_verdicts_name_the_group_the_step_and_the_length():
    measured = {"length": [1, 2], "scale": [1.0, 1.0], "fused": [1e-9, 1e-9]}
    (v,) = drift.verdicts(measured, ("fused",))
    assert (v.group, v.name) == ("drift", "fused step, float32, 2 positions")


def test_the_commands_defaults_and_flags(capsys, monkeypatch):
    args = drift.make_parser().parse_args([])
    assert (args.length, args.seed, args.steps, args.paper) == (65536, 0, list(drift.STEPS), False)
    assert drift.make_parser().parse_args(["--paper"]).paper is True
    monkeypatch.setattr(sys, "argv", ["drift", "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_module("sashimi.harness.drift", run_name="__main__")
    assert stop.value.code == 0 and "usage: python -m sashimi.harness.drift" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        drift.main(["--length", "0"])
    assert "error: --length must be a power of two of at least 16 (the model's pools); got 0" in capsys.readouterr().err


def test_without_the_native_library_its_step_is_a_skip_saying_why(capsys, monkeypatch):
    monkeypatch.setattr(drift, "native_available", lambda: False)
    monkeypatch.setattr(drift, "native_reason", lambda: "no C++ compiler (test)")
    assert drift.main(["--length", "16", "--steps", "native", "fused"]) == 0
    out = capsys.readouterr().out
    assert "no C++ compiler (test)" in out and "[skip]" in out and "1 of 2 steps pass (1 skipped)" in out
    assert "fused step, float32, 16 positions" in out and "native step, float32" not in out  # measured: fused only

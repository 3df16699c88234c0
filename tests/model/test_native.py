"""The native step (sashimi/model/native_step.cpp, generation's default path on a CPU) against the
oracles of the fused step: the modules' own step and the convolution-mode forward, in float64 and
float32, on random weights, configurations, batch sizes and thread counts; its build, its
fallback and its errors."""

import dataclasses
import gc
import hashlib
import math
import platform
import subprocess
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sashimi.harness.verdict import assert_close
from sashimi.model import native, native_parts
from sashimi.model.native import NativeStep
from sashimi.sampling import sample as sampling
from tests import helpers
from tests.helpers import model_properties, seeds, small_model_configs, tokens
from tests.model.weights import randomized

needs_native = pytest.mark.skipif(not native.available(), reason=f"no native step here: {native.reason()}")


def native_rollout(model, x: torch.Tensor, threads: int = 1) -> torch.Tensor:
    model.setup_step()
    step = NativeStep(model, x.shape[0], threads)
    with torch.no_grad():
        return torch.stack([step.step(x[:, t]) for t in range(x.shape[1])], 1)


def test_the_native_step_builds_wherever_a_compiler_is():
    """CI and every machine with a C++ compiler run the native path: a build that breaks fails here
    rather than falling back unseen."""
    if native.compiler() is not None:
        assert native.available(), native.reason()


@pytest.mark.first
@needs_native
@model_properties()
@given(small_model_configs(min_d_model=helpers.PRECISE), seeds, st.integers(1, 5), st.integers(1, 2))
def test_native_step_equals_convolution(config, seed, batch, threads):
    """Teacher-forced logits of the native step vs the parallel forward (float64: another algorithm,
    within the whole-model step row), over 3 coarse blocks so that every depth runs and refills its
    finer one more than once; batches of 1 to 5 rows (the row tiles of 2 and their remainder), on 1
    or 2 threads. Against the modules' step: the fixed configurations below (and test_lm's property
    holds the modules' step to the forward on the same draws)."""
    model = randomized(seed, torch.float64, **config)
    x = tokens(seed, batch, 3 * math.prod(config["pool"]), 2 ** config["bits"])
    got = native_rollout(model, x, threads)
    with torch.no_grad():
        assert_close(got, model(x), "model_step_vs_conv_float64")


@needs_native
@pytest.mark.parametrize(
    "dtype,d_model,ff",
    [(torch.float64, 36, 2), (torch.float64, 17, 4), (torch.float32, 33, 2), (torch.float64, 33, 1)],
    ids=["float64-36", "float64-17-ff4", "float32-33", "float64-33-ff1"],
)
def test_native_step_equals_module_step_for_widths_across_tiles(dtype, d_model, ff):
    """Widths 36, 72 and 144: whole 128-byte tiles of outputs and a partial one in every linear;
    17 (float64) and 33 (float32): a last tile of one output, and activations with a tail past the
    last full vector of 8; ff 4: a depth's widest buffer is its last block's (4 H, past GLU's 2 H); ff 1
    at 33: a hidden width one past a whole tile, whose GELU only the last tile's thread applies."""
    model = randomized(1, dtype, bits=8, d_model=d_model, n_layers=1, pool=[2, 2], expand=2, ff=ff, d_state=8)
    x = tokens(1, 5, 12, 256)
    row = "native_vs_module_step_float64" if dtype == torch.float64 else "native_vs_module_step_float32"
    assert_close(native_rollout(model, x, threads=2), helpers.rollout(model, x), row)


@needs_native
def test_native_step_equals_module_step_for_the_paper_layout_float32():
    """The paper layout (d_model 64, N 64, pool [4, 4], 8 layers per stage), float32: the float
    approximations of erf and exp inside, at the size generation runs."""
    model = randomized(
        0, torch.float32, bits=8, d_model=64, n_layers=8, pool=[4, 4], expand=2, ff=2, n_ssm=1, d_state=64
    )
    x = tokens(0, 2, 40, 256)
    assert_close(native_rollout(model, x), helpers.rollout(model, x), "native_vs_module_step_float32")


@needs_native
def test_native_step_leaves_the_model_untouched():
    model = randomized(2, torch.float64, **dataclasses.asdict(helpers.tiny_config(8)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    native_rollout(model, tokens(2, 2, 8, 256))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@needs_native
def test_bad_tokens_missing_setup_and_other_dtypes_are_named():
    model = randomized(3, torch.float32, **dataclasses.asdict(helpers.tiny_config(8)))
    with pytest.raises(RuntimeError, match="setup_step"):
        NativeStep(model, 1)
    model.setup_step()
    step = NativeStep(model, 2)
    with pytest.raises(ValueError, match=r"one token per sequence, shape \(2,\); got \(3,\)"):
        step.step(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="256"):
        step.step(torch.tensor([0, 256]))
    with pytest.raises(ValueError, match="float32 or float64 .* got torch.bfloat16"):
        NativeStep(model.to(torch.bfloat16), 1)


@needs_native
def test_sample_runs_the_native_step_and_draws_what_the_module_step_draws(monkeypatch):
    """compile="auto" takes the native step on a CPU, given the process's threads; the same seed
    gives the same tokens as the modules' step (float64: no draw sits within rounding of a boundary)
    and log-likelihoods within the float32-logits row (both draw from the logits in float32)."""
    built = []
    monkeypatch.setattr(sampling.native, "NativeStep", lambda *a: built.append(a[1:]) or NativeStep(*a))
    model = randomized(6, torch.float64, **dataclasses.asdict(helpers.tiny_config(8)))
    prefix = tokens(6, 1, 5, 256)[0]
    fast = sampling.sample(model, 3, 30, temperature=0.8, top_p=0.9, prefix=prefix, seed=1)
    plain = sampling.sample(model, 3, 30, temperature=0.8, top_p=0.9, prefix=prefix, seed=1, compile=False)
    assert built == [(3, torch.get_num_threads())]  # ThreadChoice then times 1 thread and these
    assert torch.equal(fast[0], plain[0])
    assert_close(fast[1], plain[1], "metrics_float32_logits")


@pytest.mark.parametrize("available", [True, False])
def test_the_engine_rule(available, monkeypatch):
    """auto: native on a CPU where it builds (float32 or float64); else compiled from
    COMPILE_MIN_STEPS steps when a compiler is present; else the modules' step. True and False
    force the compiled and the modules' step."""
    monkeypatch.setattr(sampling.native, "available", lambda: available)
    monkeypatch.setattr(sampling, "compiler_available", lambda: True)
    cpu, long = torch.device("cpu"), sampling.COMPILE_MIN_STEPS
    engine = sampling.step_engine
    assert engine("auto", cpu, torch.float32, 10) == ("native" if available else "modules")
    assert engine("auto", cpu, torch.float64, long) == ("native" if available else "compiled")
    assert engine("auto", cpu, torch.bfloat16, 10) == "modules"
    assert engine(True, cpu, torch.float32, 10) == "compiled" and engine(False, cpu, torch.float32, long) == "modules"
    assert engine("auto", torch.device("cuda"), torch.float32, long) == "compiled"


def test_the_build_is_cached_and_a_failing_compiler_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("SASHIMI_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="false failed"):
        native.build("false")
    assert list((tmp_path / "cache").iterdir()) == []  # nothing half-written left behind
    failing = tmp_path / "cxx"
    failing.write_text(
        "#!/bin/sh\necho 'first line' >&2\necho 'native_step.cpp:3: error: boom' >&2\necho '   ^~~' >&2\nexit 1\n"
    )
    failing.chmod(0o755)
    with pytest.raises(RuntimeError, match="native_step.cpp:3: error: boom"):  # the compiler's own words
        native.build(str(failing))
    if native.compiler() is None:
        return
    built = native.build(native.compiler())
    stamp = built.stat().st_mtime_ns
    assert native.build(native.compiler()) == built and built.stat().st_mtime_ns == stamp


def test_sample_says_when_the_native_step_is_not_there(monkeypatch):
    """A user whose machine cannot build the library learns why generation runs slower."""
    monkeypatch.setattr(sampling.native, "available", lambda: False)
    monkeypatch.setattr(sampling.native, "WHY_NOT", ["no C++ compiler on PATH (c++, g++, clang++ or $CXX)"])
    notices = []
    model = randomized(7, torch.float32, **dataclasses.asdict(helpers.tiny_config(8)))
    sampling.sample(model, 1, 3, log=notices.append)
    assert notices == [
        "the native step is not available (no C++ compiler on PATH (c++, g++, clang++ or $CXX)): "
        "running the modules' own step"
    ]


@pytest.mark.parametrize(
    "cpuinfo,expected",
    [
        ("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512f\n", "flags\t\t: fpu avx2 avx512f"),
        ("processor\t: 0\nFeatures\t: fp asimd sve\n", "Features\t: fp asimd sve"),  # aarch64 names them so
        ("processor\t: 0\n", ""),
    ],
    ids=["x86", "aarch64", "no-flags"],
)
def test_the_build_key_holds_the_cpus_flag_line(cpuinfo, expected, monkeypatch):
    """A cache shared between machines must never load another CPU's -march=native build: the key
    carries /proc/cpuinfo's flag line, not its first line (the same on every CPU)."""
    monkeypatch.setattr(native.Path, "read_text", lambda self: cpuinfo)
    assert native.cpu_flags() == expected


def test_no_cpuinfo_gives_an_empty_flag_line(monkeypatch):
    def unreadable(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(native.Path, "read_text", unreadable)
    assert native.cpu_flags() == ""


def test_every_input_of_the_build_key_names_another_library(tmp_path, monkeypatch):
    """Source, compiler and CPU flags each change the cached file's name, computed here from the
    documented key (source, compiler, flags, machine, CPU flag line), not read from the code."""
    cache = tmp_path / "not" / "yet" / "there"  # the build makes the cache's parents too
    monkeypatch.setenv("SASHIMI_CACHE", str(cache))
    compiled = []

    def fake_compiler(cmd, **kwargs):
        compiled.append(cmd[0])
        # written beside its target, so that the rename into the cache is atomic (one file system)
        assert Path(cmd[-1]).parent.parent == cache
        Path(cmd[-1]).write_bytes(b"")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(native.subprocess, "run", fake_compiler)
    sources = [source.read_text() for source in native.SOURCES]
    key = "\n".join([*sources, "c++", *native.FLAGS, platform.machine(), native.cpu_flags()])
    assert native.build("c++").name == f"sashimi_native_{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"
    other_compiler = native.build("clang++")
    monkeypatch.setattr(native, "cpu_flags", lambda: "flags : another cpu")
    other_cpu = native.build("c++")
    assert len({p.name for p in cache.iterdir()}) == 3 and compiled == ["c++", "clang++", "c++"]
    assert other_compiler != other_cpu


@pytest.fixture
def fresh_library():
    """library() tried anew, and its cached answer restored for the tests after."""
    native.library.cache_clear()
    yield
    native.library.cache_clear()


def test_why_the_native_step_is_off_is_said(monkeypatch, fresh_library):
    monkeypatch.setenv("SASHIMI_NATIVE", "0")
    assert not native.available() and native.reason() == "SASHIMI_NATIVE=0"
    monkeypatch.delenv("SASHIMI_NATIVE")
    native.library.cache_clear()
    monkeypatch.setattr(native, "compiler", lambda: None)
    assert not native.available() and native.reason() == "no C++ compiler on PATH (c++, g++, clang++ or $CXX)"
    native.library.cache_clear()
    monkeypatch.setattr(native, "compiler", lambda: "cxx")

    def failing(cxx):
        raise RuntimeError(f"{cxx} failed: boom")

    monkeypatch.setattr(native, "build", failing)
    assert not native.available() and native.reason() == "building native_step.cpp failed: cxx failed: boom"


@needs_native
def test_the_library_is_loaded_once(fresh_library):
    assert native.library() is native.library() and native.reason() == ""


def test_a_native_step_where_there_is_none_says_why(monkeypatch, fresh_library):
    monkeypatch.setenv("SASHIMI_NATIVE", "0")
    model = randomized(7, torch.float32, **dataclasses.asdict(helpers.tiny_config(8)))
    with pytest.raises(RuntimeError, match="the native step is not available here: SASHIMI_NATIVE=0"):
        NativeStep(model, 1)


@needs_native
def test_the_native_step_uses_the_threads_asked_for():
    model = randomized(7, torch.float32, **dataclasses.asdict(helpers.tiny_config(8)))
    model.setup_step()
    assert NativeStep(model, 3, threads=2).threads == 2
    assert NativeStep(model, 3).threads == torch.get_num_threads()
    with pytest.raises(ValueError, match="at least 1 thread; got 0"):
        NativeStep(model, 3, threads=0)


@needs_native
@pytest.mark.parametrize("n", [1, 13, 4099, 100003])  # lengths with a tail past the last full vector of 8
@pytest.mark.parametrize("gate", [False, True], ids=["gelu", "sigmoid"])
def test_the_native_activations_meet_float64(gate, n):
    """The float32 step's vectorized GELU (erf by Abramowitz & Stegun 7.1.26, |error| < 1.5e-7, so
    the GELU's is under 0.75e-7 |x|) and GLU sigmoid (Cephes' expf, 2 ulp) against torch in float64
    on the same float32 inputs over [-12, 12]. Bounds: GELU 1.5e-7 |x| + 2 eps |y|, sigmoid
    2 eps |y| (eps: float32's), twice the documented errors; the mutants of the expf polynomial and
    of the tail past the last full vector fail them (docs/MUTATION_DIFF.md, parts 3b and 3c)."""
    x32 = (torch.rand(n, generator=torch.Generator().manual_seed(n)) * 24 - 12).float()
    x = x32.double()
    want = torch.sigmoid(x) if gate else torch.nn.functional.gelu(x)
    kept = x32.clone()
    got = native_parts.activation(x32, gate)
    assert torch.equal(x32, kept)  # the caller's values are left alone: the activation runs on a copy
    if not gate:
        assert torch.equal(native_parts.activation(x32), got)  # GELU is the default
    eps = torch.finfo(torch.float32).eps
    bound = 2 * eps * want.abs() + (0 if gate else 1.5e-7 * x.abs())
    assert got.dtype == torch.float32 and bool(((got.double() - want).abs() <= bound).all())
    assert torch.allclose(native_parts.activation(x, gate), want, rtol=1e-15, atol=1e-15)  # float64: std::erf, std::exp


@needs_native
def test_a_native_step_frees_its_cpp_object_once():
    model = randomized(7, torch.float32, **dataclasses.asdict(helpers.tiny_config(8)))
    model.setup_step()
    stepper = NativeStep(model, 2)
    calls = []
    real = stepper.free
    stepper.free = lambda: calls.append(real())
    del stepper
    gc.collect()
    assert len(calls) == 1

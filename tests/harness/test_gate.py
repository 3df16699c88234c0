"""python -m sashimi.check: passes on this tree, fails naming the check when an output moves."""

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import specs
from reference import layer as ref_layer
from reference import sashimi as ref_model
from sashimi import check as check_cmd
from sashimi.core.config import ModelConfig
from sashimi.harness import gate, golden
from sashimi.harness.verdict import Verdict
from sashimi.model import lm as lm_module
from sashimi.model.backbone import Backbone
from sashimi.model.kernel import SSMKernel
from sashimi.model.lm import Decoder
from sashimi.model.s4 import S4Layer
from sashimi.training import optimizer as optimizer_module
from tests.helpers import numpy_state

SEED = gate.SEED


@pytest.fixture(scope="module")
def measured():
    return golden.golden_outputs()


def test_golden_outputs_match_the_committed_file(measured):
    rows = golden.golden_rows(measured, golden.read())
    failed = [r for r in rows if not r.passed]
    assert not failed, failed
    assert {r.name for r in rows} >= {
        "model8/logits_conv",
        "model8/logits_step",
        "model16/train_losses",
        "quantize/mulaw8/tokens",
    }


def test_a_moved_output_fails_and_is_named(measured):
    stored = golden.read()
    stored["model8/train_losses"] = stored["model8/train_losses"] * (1 + 1e-5)
    stored["quantize/linear16/tokens"] = stored["quantize/linear16/tokens"] + 1
    failed = {r.name for r in golden.golden_rows(measured, stored) if not r.passed}
    assert failed == {"model8/train_losses", "quantize/linear16/tokens"}


@pytest.mark.nightly  # a second measurement (3 s); the committed golden file is compared in make test
def test_golden_outputs_are_deterministic(measured):
    again = golden.golden_outputs()
    assert all(np.array_equal(measured[k], again[k]) for k in measured)


@pytest.mark.nightly  # 9 s, every family again: CI runs `python -m sashimi.check` itself (ci.yml)
def test_command_passes(capsys):
    assert check_cmd.main([]) == 0
    out = capsys.readouterr().out
    assert "checks pass" in out and "FAIL" not in out


def test_update_golden_writes_the_measured_outputs_and_says_what_changed(monkeypatch, tmp_path, capsys):
    target = tmp_path / "golden" / "golden.npz"
    monkeypatch.setattr(golden, "GOLDEN", target)
    monkeypatch.setattr(golden, "golden_outputs", lambda: {"a": np.arange(3.0), "b": np.ones(2)})
    assert check_cmd.main(["--update-golden"]) == 0
    monkeypatch.setattr(golden, "golden_outputs", lambda: {"a": np.arange(3.0) + 0.5, "c": np.zeros(1)})
    assert check_cmd.main(["--update-golden"]) == 0
    out = capsys.readouterr().out
    assert "added    a (3,)" in out and "changed  a: max diff 5.000e-01" in out and "removed  b" in out
    written = dict(np.load(target))
    assert set(written) == {"a", "c"} and np.array_equal(written["a"], np.arange(3.0) + 0.5)
    assert not list(target.parent.glob("*.tmp*"))


def test_the_command_passes_its_flags_to_the_gate(monkeypatch, tmp_path):
    asked = {}
    monkeypatch.setattr(
        gate, "run", lambda fixtures, only, **kw: asked.update(fixtures=fixtures, only=only, **kw) or []
    )
    argv = ["--only", "specs", "--only", "golden", "--fixtures", str(tmp_path), "--allow-missing-fixtures", "-x"]
    assert check_cmd.main(argv) == 0
    assert asked["only"] == ["specs", "golden"] and asked["fixtures"] == tmp_path
    assert asked["allow_missing_fixtures"] is True and asked["exitfirst"] is True


def test_the_command_names_each_family_on_stderr_as_it_starts(monkeypatch, capsys):
    monkeypatch.setattr(gate, "run", lambda fixtures, only, log, **kw: log("golden") or [])
    assert check_cmd.main([]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"^check golden \(\d+ s so far\)$", err, re.MULTILINE) and "check golden" not in out


def test_a_crashing_part_is_a_named_failure(monkeypatch):
    """A mutant that makes the model raise shows up as a failed check naming the part, not as a crash."""

    def broken():
        raise RuntimeError("UpPool.step: steps out of phase")

    monkeypatch.setitem(golden.GOLDEN_PARTS, "data", broken)
    errors = {}
    measured = golden.golden_outputs(errors)
    assert errors == {"data": "RuntimeError: UpPool.step: steps out of phase"}
    rows = golden.golden_rows(measured, golden.read(), errors)
    failed = [r for r in rows if not r.passed]
    assert [r.name for r in failed] == ["data outputs"] and "out of phase" in failed[0].measured


def test_optimizer_and_identities_hold():
    """AdamW groups and the plateau schedule match specs/presets.json; decoder slices, cache, token
    range; gradient clipping (AdamW alone is blind to a uniform gradient scale, so SGD shows it)."""
    rows = gate.optimizer_rows() + gate.identity_rows()
    assert len(rows) == 11 and all(r.passed for r in rows), [r for r in rows if not r.passed]


# --- the gate's own sensitivity: a known-wrong model, reference or contract fails its family's rows, named ---


def failed(rows) -> set[tuple[str, str]]:
    return {(r.group, r.name) for r in rows if r.failed}


def decoder_keeps_the_first_positions(monkeypatch):
    def forward(self, x):
        if self.l_output:
            return self.output_transform(x[:, : self.l_output])
        return self.output_transform(x if self.l_output is None else x[:, -1])

    monkeypatch.setattr(Decoder, "forward", forward)


def cache_ignores_in_place_edits(monkeypatch):
    key_of = SSMKernel._cache_key

    def without_versions(self, L):
        (L, parts), tensors = key_of(self, L)
        return (L, tuple(part[:1] + part[2:] for part in parts)), tensors

    monkeypatch.setattr(SSMKernel, "_cache_key", without_versions)


def token_check_off_by_one(monkeypatch):
    def check(tokens, n_classes):
        if bool(((tokens < 0) | (tokens > n_classes)).any()):
            raise ValueError("out of range")

    monkeypatch.setattr(lm_module, "check_tokens", check)


def no_gradient_clipping(monkeypatch):
    monkeypatch.setattr(
        torch.nn.utils, "clip_grad_norm_", lambda parameters, max_norm, *args, **kwargs: torch.tensor(0.0)
    )


def clipping_a_thousandth_above_the_norm(monkeypatch):
    """The gradient scaled to 1.001 times the asked norm: a slightly wrong clip the row must not allow."""

    def clip(parameters, max_norm, *args, **kwargs):
        grads = [p.grad for p in parameters if p.grad is not None]
        total = float(torch.cat([g.double().flatten() for g in grads]).norm())
        if total > max_norm:
            for g in grads:
                g.mul_(1.001 * max_norm / total)
        return torch.tensor(total)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)


@pytest.mark.parametrize(
    "bug, row",
    [
        (decoder_keeps_the_first_positions, "decoder l_output=3 == the last positions of l_output=None"),
        (cache_ignores_in_place_edits, "kernel cache follows an in-place parameter edit"),
        (token_check_off_by_one, "token C = 256 of an 8-bit model is refused"),
        (no_gradient_clipping, "training step clips the gradient norm (SGD, lr 1, clip 1e-3)"),
        (clipping_a_thousandth_above_the_norm, "training step clips the gradient norm (SGD, lr 1, clip 1e-3)"),
    ],
    ids=["decoder-first-k", "cache-ignores-edits", "token-check-off-by-one", "no-clipping", "clip-0.1%-loose"],
)
def test_each_identity_bug_fails_exactly_its_named_row(monkeypatch, bug, row):
    rows = gate.identity_rows()
    assert ("identity", row) in {(r.group, r.name) for r in rows} and not failed(rows), (
        "the row exists and passes on this tree"
    )
    bug(monkeypatch)
    assert failed(gate.guarded("identity", gate.identity_rows)) == {("identity", row)}


def tanh_gelu(x):
    """The tanh approximation of GELU, a common slip for the exact erf form (differs by up to ~1e-3)."""
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def softplus_dt(monkeypatch):
    parameters = SSMKernel.ssm_parameters

    def softplus_for_exp(self):
        _, *rest = parameters(self)
        return (torch.nn.functional.softplus(self.inv_dt), *rest)

    monkeypatch.setattr(SSMKernel, "ssm_parameters", softplus_for_exp)


def test_reference_rows_fail_for_a_wrong_reference_gelu_or_a_wrong_fast_kernel(monkeypatch):
    rows = gate.reference_rows()
    model_rows = {("reference", r.name) for r in rows if r.name.startswith("whole model vs reference")}
    kernel_rows = {("reference", r.name) for r in rows if r.name.startswith("kernel vs reference")}
    assert len(model_rows) == len(kernel_rows) == 3 and not failed(rows)
    with monkeypatch.context() as m:
        m.setattr(ref_layer, "gelu", tanh_gelu)  # the S4 layers of the reference, not its kernel
        assert failed(gate.guarded("reference", gate.reference_rows)) == model_rows
    softplus_dt(monkeypatch)  # the fast model's Delta: its kernels and so its outputs move
    assert failed(gate.guarded("reference", gate.reference_rows)) == model_rows | kernel_rows


def wrong_parameter_count_in_the_contract(monkeypatch) -> tuple[str, str]:
    """specs/params.json with one total off by one; returns the row that must fail."""
    load = specs.load
    params = copy.deepcopy(load("params"))
    params["exact"][0]["total"] += 1
    monkeypatch.setattr(specs, "load", lambda name: params if name == "params" else load(name))
    return ("specs", f"{params['exact'][0]['name']}: total")


def test_spec_rows_fail_for_a_wrong_count_in_the_contract(monkeypatch):
    # every other row still passes in the same run: the control is the equality itself
    row = wrong_parameter_count_in_the_contract(monkeypatch)
    assert failed(gate.guarded("specs", gate.spec_rows)) == {row}


def test_optimizer_rows_fail_when_the_ssm_group_gets_the_global_rate(monkeypatch):
    groups = optimizer_module.param_groups

    def global_rate(model, lr, ssm_lr, spec):
        return [{**group, "lr": lr} for group in groups(model, lr, ssm_lr, spec)]

    monkeypatch.setattr(optimizer_module, "param_groups", global_rate)
    assert failed(gate.guarded("specs", gate.optimizer_rows)) == {("specs", "optimizer ssm_lr")}


def write_fixture(folder: Path, perturb: bool = False) -> Path:
    """A small fixture in the published layout (pool and FF linears as Conv1d weights, float32
    weights, a JSON sidecar) whose expected outputs and kernels come from the float64 reference.
    With `perturb`, one stored weight (a kernel's B) is 0.1% off what the outputs were made from."""
    kwargs = dict(d_model=4, n_layers=1, pool=[2, 2], expand=2, ff=2, dropout=0.0)
    torch.manual_seed(SEED)
    model = Backbone(ModelConfig(**kwargs, n_ssm=1, d_state=4)).double()
    x = torch.randn(2, 16, 4, dtype=torch.float64)
    with torch.no_grad():
        model(x)  # the first forward writes C~ and l_kernel, as the published one does
    weights = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in numpy_state(model).items()}
    exact = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in weights.items()}
    conv = (
        "d_layers.0.linear.weight",
        "d_layers.1.linear.weight",
        "u_layers.0.0.linear.weight",
        "u_layers.1.0.linear.weight",
    )
    arrays = {
        k: v[..., None] if k in conv or k.endswith(("ff.0.0.weight", "ff.2.weight")) else v for k, v in weights.items()
    }
    arrays["x_input"] = x.float().numpy()
    arrays["y_conv_float64"] = ref_model.backbone(exact, {"pool": kwargs["pool"]}, arrays["x_input"].astype(np.float64))
    layers = {}
    for name, module in model.named_modules():
        if isinstance(module, S4Layer):
            l_kernel = int(module.layer.kernel.l_kernel)
            sub = {k[len(name) + 1 :]: v for k, v in exact.items() if k.startswith(name + ".")}
            arrays[f"kernel_float64.{name}"] = ref_layer.s4_kernel(sub, l_kernel)[None]
            layers[name] = {"l_kernel": l_kernel}
    if perturb:
        key = next(k for k in arrays if k.endswith("kernel.B"))
        arrays[key] = arrays[key] * np.float32(1.001)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "small.npz"
    np.savez(path, **arrays)
    meta = {
        "constructor_kwargs": {**kwargs, "bidirectional": False, "unet": False},
        "batch": 2,
        "length": 16,
        "s4_layers": layers,
    }
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def test_published_rows_fail_for_a_perturbed_published_weight(tmp_path):
    write_fixture(tmp_path / "right")
    rows = gate.published_rows(tmp_path / "right")
    assert rows and all(r.group == "published" and r.name.startswith("small: ") and r.passed for r in rows), rows
    assert {
        "small: float64 forward vs published float64",
        "small: float32 step (teacher-forced) vs published float64",
    } <= {r.name for r in rows}
    write_fixture(tmp_path / "wrong", perturb=True)
    wrong = failed(gate.published_rows(tmp_path / "wrong"))
    assert ("published", "small: float64 forward vs published float64") in wrong
    assert ("published", "small: float32 forward vs published float64") in wrong


def test_absent_fixtures_fail_naming_the_folder_and_a_broken_fixture_is_a_named_failure(tmp_path, monkeypatch):
    [row] = gate.published_rows(tmp_path / "nowhere")
    assert row.failed and str(tmp_path / "nowhere") in row.name and row.measured == "folder not found"
    # allowed only for the checkout's own folder: a folder named on purpose still fails
    [row] = gate.published_rows(tmp_path / "nowhere", allow_missing=True)
    assert row.failed
    monkeypatch.setattr(gate, "DEFAULT_FIXTURES", tmp_path / "nowhere")
    monkeypatch.delenv("SASHIMI_FIXTURES", raising=False)
    [row] = gate.published_rows(None, allow_missing=True)
    assert row.passed is None and not row.failed and "(from the checkout)" in row.name
    [row] = gate.published_rows(None)
    assert row.failed
    monkeypatch.setenv("SASHIMI_FIXTURES", str(tmp_path / "env-nowhere"))
    [row] = gate.published_rows(None, allow_missing=True)
    assert row.failed and str(tmp_path / "env-nowhere") in row.name and "SASHIMI_FIXTURES" in row.name
    write_fixture(tmp_path).with_suffix(".json").unlink()
    [row] = gate.guarded("published", lambda: gate.published_rows(tmp_path))
    assert (row.group, row.name, row.failed) == ("published", "published checks", True) and "sidecar" in row.measured


def test_the_command_exits_1_for_a_missing_fixtures_folder(monkeypatch, tmp_path, capsys):
    """SASHIMI_FIXTURES naming a missing folder: exit 1, the failing row names the folder (the
    other families are replaced by nothing: only the published row decides here)."""
    monkeypatch.setenv("SASHIMI_FIXTURES", str(tmp_path / "nonexistent"))
    published = gate.published_rows
    monkeypatch.setattr(
        gate,
        "run",
        lambda fixtures, only, log=None, allow_missing_fixtures=False, exitfirst=False: published(
            fixtures, allow_missing_fixtures
        ),
    )
    assert check_cmd.main([]) == 1
    assert (
        f"FAILED: published: published fixtures in {tmp_path / 'nonexistent'} (from SASHIMI_FIXTURES)"
        in capsys.readouterr().out
    )
    assert check_cmd.main(["--allow-missing-fixtures"]) == 1


def test_a_family_that_raises_is_one_named_failure(monkeypatch):
    def broken(self, x):
        raise RuntimeError("DownPool: length out of phase\nsecond line")

    monkeypatch.setattr(Backbone, "forward", broken)
    for group, rows in (
        ("identity", gate.identity_rows),
        ("reference", gate.reference_rows),
        ("specs", gate.spec_rows),
    ):
        [row] = gate.guarded(group, rows)
        assert (row.group, row.name, row.passed, row.failed) == (group, f"{group} checks", False, True)
        assert row.measured == "RuntimeError: DownPool: length out of phase"


def test_run_and_the_command_name_every_failing_family(monkeypatch, tmp_path, capsys):
    """One known-wrong piece per family at once: gate.run returns exactly those rows as failures
    (the golden outputs do not involve any of them), and the command exits 1 naming each."""
    write_fixture(tmp_path, perturb=True)
    decoder_keeps_the_first_positions(monkeypatch)
    monkeypatch.setattr(ref_layer, "gelu", tanh_gelu)
    contract_row = wrong_parameter_count_in_the_contract(monkeypatch)
    # the golden family is tested above and involves none of these pieces; its slowest part
    # (16-bit) is left out here to keep this test fast
    monkeypatch.delitem(golden.GOLDEN_PARTS, "model16")
    stored = golden.read
    monkeypatch.setattr(golden, "read", lambda: {k: v for k, v in stored().items() if not k.startswith("model16/")})
    returned = []
    run = gate.run
    monkeypatch.setattr(gate, "run", lambda *a, **k: returned.extend(run(*a, **k)) or returned)
    assert check_cmd.main(["--fixtures", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    wrong = failed(returned)
    assert {group for group, _ in wrong} == {"specs", "identity", "reference", "published"}
    assert contract_row in wrong and ("identity", "decoder l_output=3 == the last positions of l_output=None") in wrong
    assert ("published", "small: float64 forward vs published float64") in wrong
    assert {name for group, name in wrong if group == "reference"} == {
        r.name for r in returned if r.name.startswith("whole model vs reference")
    }
    named = {line.split(": measured ")[0] for line in out.splitlines() if line.startswith("FAILED: ")}
    assert named == {f"FAILED: {group}: {name}" for group, name in wrong}


def test_a_known_defect_row_passes_only_while_the_defect_is_caught(tmp_path):
    """pipeline_v4.1.0 (its step skipped a GELU) is caught; the same sidecar on the correct v4
    fixture (nothing to catch) fails the row, as does a defect named on rows that pass."""
    from tests.helpers import PUBLISHED

    [row] = gate.published_rows(_folder_with(tmp_path / "buggy", PUBLISHED / "pipeline_v4.1.0.npz"))
    assert row.passed and "known defect caught" in row.name
    defect = json.loads((PUBLISHED / "pipeline_v4.1.0.json").read_text())["known_defect"]
    [row] = gate.published_rows(_folder_with(tmp_path / "fixed", PUBLISHED / "pipeline_v4.npz", known_defect=defect))
    assert row.failed


def test_a_known_defect_only_partly_present_fails_the_row(tmp_path):
    """pipeline_v4.1.0's sidecar naming its defect on its published-step rows and on its float32
    forward row (which passes: the defect there is absent): the defect is only partly present, and
    the row fails; named on the step rows alone, it passes."""
    from tests.helpers import PUBLISHED

    fixture = PUBLISHED / "pipeline_v4.1.0.npz"
    defect = json.loads(fixture.with_suffix(".json").read_text())["known_defect"]
    assert defect["fails"] == ["published step"]
    partly = {**defect, "fails": ["published step", "float32 forward"]}
    [row] = gate.published_rows(_folder_with(tmp_path / "partly", fixture, known_defect=partly))
    assert row.failed and (row.measured, row.expected) == (
        "2 rows fail",
        "3 rows naming ['published step', 'float32 forward']",
    )


def _folder_with(folder: Path, fixture: Path, **sidecar_extra) -> Path:
    folder.mkdir()
    (folder / fixture.name).write_bytes(fixture.read_bytes())
    meta = json.loads(fixture.with_suffix(".json").read_text())
    (folder / fixture.name).with_suffix(".json").write_text(json.dumps({**meta, **sidecar_extra}))
    return folder


def test_exitfirst_stops_after_the_first_family_with_a_failure(monkeypatch):
    called = []
    failing = Verdict("identity", "broken", "1", "0", False)
    for name, rows in (("spec_rows", []), ("optimizer_rows", []), ("identity_rows", [failing]), ("reference_rows", [])):
        monkeypatch.setattr(gate, name, lambda name=name, rows=rows: called.append(name) or rows)
    monkeypatch.setattr(gate, "published_rows", lambda fixtures, allow=False: called.append("published_rows") or [])
    rows = gate.run(only=["specs", "identity", "reference", "published"], exitfirst=True)
    assert rows == [failing] and called == ["spec_rows", "optimizer_rows", "identity_rows"]
    called.clear()
    assert gate.run(only=["specs", "identity", "reference", "published"]) == [failing]
    assert called == ["spec_rows", "optimizer_rows", "identity_rows", "reference_rows", "published_rows"]


def test_missing_published_fixtures_fail_unless_allowed(monkeypatch):
    asked = []
    monkeypatch.setattr(gate, "published_rows", lambda fixtures, allow=False: asked.append(allow) or [])
    gate.run(only=["published"])
    gate.run(only=["published"], allow_missing_fixtures=True)
    assert asked == [False, True]


def test_an_unknown_family_is_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown gate families \['nope'\]; expected some of \['specs'"):
        gate.run(only=["specs", "nope"])


def test_a_fixture_without_its_layer_list_checks_the_kernels_its_arrays_hold(tmp_path):
    path = write_fixture(tmp_path / "bare")
    meta = json.loads(path.with_suffix(".json").read_text())
    layers = sorted(meta.pop("s4_layers"))
    path.with_suffix(".json").write_text(json.dumps(meta))  # the kernels named by the arrays' keys alone
    rows = gate.published_rows(tmp_path / "bare")
    kernels = sorted(r.name.removeprefix("small: float64 kernel ") for r in rows if "float64 kernel" in r.name)
    assert kernels == layers and all(r.passed for r in rows), [r for r in rows if not r.passed]

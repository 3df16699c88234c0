"""The official pipeline's layouts (v3, v4): layout detection, weight-norm folding by hand, the whole
configuration inferred from shapes, and an imported model equal to the one written out and to the
float64 reference, in every variant; files read without running stored code."""

import json
import math
import os

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference import sashimi as ref
from sashimi import generate as generate_cmd
from sashimi import interop as interop_cmd
from sashimi.harness.verdict import assert_close, tolerance_bound
from sashimi.io import pipeline, statefile
from sashimi.io.checkpoint import load_model
from sashimi.io.interop import InteropError, import_file, pipeline_model
from tests import helpers
from tests.helpers import (
    PUBLISHED,
    numpy_state,
    pipeline_layout,
    random_pipeline_state,
    seeds,
    small_model_configs,
    tokens,
)


def written_model(config: dict, seed: int, first_length: int) -> torch.nn.Module:
    """A random float64 model whose first forward (at `first_length`) wrote C~ into C, as a trained pipeline model
    holds it."""
    model = helpers.lm(seed, torch.float64, **config)
    with torch.no_grad():
        model(tokens(seed, 1, first_length, 2 ** config["bits"]))
    return model


def assert_generates_one_wav(checkpoint, out):
    """`generate` runs on an imported checkpoint: 160 samples, one WAV."""
    argv = ["--checkpoint", str(checkpoint), "--length", "160", "--n-samples", "1", "--out", str(out)]
    assert generate_cmd.main(argv) == 0
    assert len(list(out.glob("*.wav"))) == 1


@given(
    small_model_configs(bits=8, min_d_model=helpers.PRECISE),
    seeds,
    st.sampled_from(["pipeline-v3", "pipeline-v4"]),
    st.integers(1, 3),
)
def test_import_recovers_the_model_and_its_configuration(config, seed, layout, blocks):
    if layout == "pipeline-v3":
        config["dt_transform"] = "exp"
    multiple = math.prod(config["pool"])
    model = written_model(config, seed, 2 * multiple)
    state = pipeline_layout(model.state_dict(), layout, seed)
    assert pipeline.detect_layout(state) == layout
    imported = pipeline_model(state, layout, config["dt_transform"], torch.float64).model
    if config["expand"] == 1 and config["n_ssm"] is None:  # every layer H wide: n_ssm None and H are one model
        config["n_ssm"] = config["d_model"]
    assert {k: getattr(imported.config, k) for k in config} == config
    x = tokens(seed, 2, blocks * multiple, 256)
    with torch.no_grad():
        ours, theirs = imported(x), model(x)
    assert_close(ours, theirs, "model_float64")
    params = numpy_state(imported)
    assert_close(ours, ref.language_model(params, config, x.numpy()), "model_float64")


def test_weight_norm_folds_by_hand():
    """g = 2, v = (3, 4): W = g v / ||v|| = (1.2, 1.6); a second row g = -1, v = (0, 5): (0, -1)."""
    W = pipeline.fold_weight_norm(torch.tensor([[2.0], [-1.0]]), torch.tensor([[3.0, 4.0], [0.0, 5.0]]))
    assert_close(W, torch.tensor([[1.2, 1.6], [0.0, -1.0]], dtype=torch.float64), "reference_identities_float64")


def test_v3_negates_the_imaginary_part_and_reshapes_log_dt():
    model = written_model(dict(bits=8, d_model=2, n_layers=1, pool=[2, 2], expand=2, ff=0, n_ssm=1, d_state=2), 0, 4)
    ours = model.state_dict()
    state = pipeline_layout(ours, "pipeline-v3")
    key = next(k for k in state if k.endswith("kernel.kernel.w_imag"))
    converted = pipeline.convert(state, "pipeline-v3")
    ours_key = "backbone." + key[len("model.") :].replace(".layer.kernel.kernel.w_imag", ".layer.layer.kernel.A_imag")
    assert torch.equal(converted[ours_key], -state[key].double()) and torch.equal(converted[ours_key], ours[ours_key])
    assert all(v.shape[-1] == 1 for k, v in converted.items() if k.endswith("inv_dt"))


def test_unknown_layout_is_named():
    with pytest.raises(pipeline.LayoutError, match="no S4 kernel keys.*first keys: a, b"):
        pipeline.detect_layout({"a": 0, "b": 0})


def test_v3_refuses_softplus():
    model = written_model(dict(bits=8, d_model=2, n_layers=1, pool=[2, 2], expand=2, ff=0, n_ssm=1, d_state=2), 0, 4)
    with pytest.raises(InteropError, match="v3 state dict stores log_dt"):
        pipeline_model(pipeline_layout(model.state_dict(), "pipeline-v3"), "pipeline-v3", "softplus")


class _Exploit:
    """Pickles as a call of os.system: loading it with a plain unpickler would run the command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_lightning_ckpt_loads_without_running_stored_code(tmp_path):
    model = written_model(dict(bits=8, d_model=2, n_layers=1, pool=[2, 2], expand=2, ff=0, n_ssm=1, d_state=2), 0, 4)
    state = pipeline_layout(model.state_dict(), "pipeline-v4")
    marker = tmp_path / "ran"
    path = tmp_path / "last.ckpt"
    torch.save(
        {"state_dict": state, "epoch": 3, "hyper_parameters": _Exploit(marker), "pytorch-lightning_version": "2.0.9"},
        path,
    )
    imported = import_file(path, dt_transform="exp")
    assert not marker.exists()
    assert imported.layout == "pipeline-v4" and imported.model.config.d_model == 2


def test_state_dict_of_objects_is_refused_with_the_conversion_recipe(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "odd.pt"
    torch.save({"state_dict": {"model.x": _Exploit(marker)}}, path)
    with pytest.raises(statefile.StateFileError, match="not tensors.*torch.save"):
        statefile.read_state_dict(path)
    assert not marker.exists()


def test_an_npz_of_pickled_objects_is_refused_without_running_them(tmp_path):
    """np.savez pickles an object array; reading it back must not unpickle it (allow_pickle stays off)."""
    marker = tmp_path / "ran"
    path = tmp_path / "objects.npz"
    np.savez(path, weight=np.zeros(3, dtype=np.float32), extra=np.array([_Exploit(marker)], dtype=object))
    with pytest.raises(statefile.StateFileError, match="cannot read .*objects.npz as a .npz of arrays"):
        statefile.read_state_dict(path)
    assert not marker.exists()


def test_truncated_file_is_one_error(tmp_path):
    path = tmp_path / "cut.pt"
    torch.save({"a": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(statefile.StateFileError, match="cannot read"):
        statefile.read_state_dict(path)
    npz = tmp_path / "cut.npz"
    np.savez(npz, a=np.zeros(1000))
    npz.write_bytes(npz.read_bytes()[:200])
    with pytest.raises(statefile.StateFileError, match="cannot read"):
        statefile.read_state_dict(npz)


# --- the official pipeline's own outputs (tests/published, made by tools/make_published_fixtures.py) --


@pytest.mark.parametrize("ref", ["v3.0.0", "v4"])
def test_pipeline_fixture_passes(ref, capsys):
    code = interop_cmd.main(["check", str(PUBLISHED / f"pipeline_{ref}.npz")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "6 of 6 checks pass" in out


def test_step_bug_of_v4_1_0_fails_naming_the_check(capsys):
    """v4.1.0's S4Block.step skipped the GELU: its step output disagrees with its own forward and with ours."""
    assert interop_cmd.main(["check", str(PUBLISHED / "pipeline_v4.1.0.npz")]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if line.lstrip().startswith("[FAIL]")]
    assert len(failed) == 2
    assert "published step (dense, first 64) vs published forward" in failed[0]
    assert "published step (dense, first 64) vs our step" in failed[1]


@pytest.mark.parametrize("ref", ["v3.0.0", "v4"])
def test_imported_fixture_generates_and_computes_the_published_logits(ref, tmp_path, capsys):
    """A fixture's state dict saved as a plain .pt: import, then the checkpoint's logits are the
    published ones (float32 bound as in interop check), and generate writes a WAV."""
    arrays = dict(np.load(PUBLISHED / f"pipeline_{ref}.npz"))
    meta = json.loads((PUBLISHED / f"pipeline_{ref}.json").read_text())
    state = {k: torch.from_numpy(v) for k, v in arrays.items() if not k.startswith("fixture/")}
    torch.save(state, tmp_path / "published.pt")
    argv = ["import", str(tmp_path / "published.pt"), "--out", str(tmp_path / "m.pt")]
    if ref == "v4":
        argv += ["--dt-transform", meta["dt_transform"]]
    assert interop_cmd.main(argv) == 0
    out = capsys.readouterr().out
    assert f"pipeline-{ref[:2]} layout" in out and "norm scalar" in out and "Delta " + meta["dt_transform"] in out
    model, _ = load_model(tmp_path / "m.pt")
    with torch.no_grad():
        logits = model(torch.from_numpy(arrays["fixture/tokens"])).double().numpy()
    published_error = np.abs(arrays["fixture/logits_f32"] - arrays["fixture/logits_f64"]).max()
    bound = tolerance_bound("interop_float32_slack", plain_error=float(published_error))
    assert np.abs(logits - arrays["fixture/logits_f64"]).max() <= bound
    assert_generates_one_wav(tmp_path / "m.pt", tmp_path / "gen")


def test_v4_default_delta_is_exp_and_says_why(tmp_path, capsys):
    arrays = dict(np.load(PUBLISHED / "pipeline_v4.npz"))
    torch.save({k: torch.from_numpy(v) for k, v in arrays.items() if not k.startswith("fixture/")}, tmp_path / "v4.pt")
    assert interop_cmd.main(["import", str(tmp_path / "v4.pt"), "--out", str(tmp_path / "m.pt")]) == 0
    out = capsys.readouterr().out
    assert "Delta = exp(inv_dt): default exp: the released *_v4.pt files were converted from v3" in out


@pytest.mark.parametrize("ref", ["v3.0.0", pytest.param("v4", marks=pytest.mark.nightly)])  # v4: 4 s, nightly
def test_full_size_sc09_key_set_imports_and_generates(ref, tmp_path, capsys):
    """The full sc09 pipeline key set and shapes (random values) imports as the sc09 model in its
    pipeline variant, with the published parameter count, and generates (once: v4; the layouts meet
    at the import, and generating with the full-size model costs 5 s)."""
    keys = json.loads((PUBLISHED / f"sc09_{ref}_keys.json").read_text())["final_act_glu"]
    path = tmp_path / "sc09.pt"
    torch.save(random_pipeline_state(keys["state_dict"]), path)
    assert interop_cmd.main(["import", str(path), "--out", str(tmp_path / "m.pt")]) == 0
    out = capsys.readouterr().out
    assert "8-bit, d_model 64, n_layers 8, pool [4, 4], expand 2, ff 2, n_ssm 1, d_state 64, norm scalar" in out
    assert f"parameters: {keys['params']['total_without_weight_g']:,}" in out
    if ref == "v4":
        assert_generates_one_wav(tmp_path / "m.pt", tmp_path / "gen")
    # and the reference writes that model back in the official key set: weight-normed pool linears
    # (not the output linears), the scalar norm's m and s one level down, v3's kernel names
    model, _ = load_model(tmp_path / "m.pt")
    written = pipeline_layout(model.state_dict(), "pipeline-" + ref[:2])
    assert {k: list(v.shape) for k, v in written.items()} == {k: shape for k, (shape, _) in keys["state_dict"].items()}


@pytest.mark.nightly  # 4 s; generate and interop read imported checkpoints in make test
def test_evaluate_reads_an_imported_checkpoint(tmp_path, audio_folder, capsys):
    """An imported pipeline model hears audio as the sc09 preset says (mu-law, 16 kHz, 16000-sample clips)."""
    from sashimi import evaluate as evaluate_cmd

    assert (
        interop_cmd.main(
            [
                "import",
                str(PUBLISHED / "pipeline_v4.npz"),
                "--dt-transform",
                "softplus",
                "--out",
                str(tmp_path / "m.pt"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        evaluate_cmd.main(
            ["--checkpoint", str(tmp_path / "m.pt"), "--data", str(audio_folder), "--batch-size", "2", "--json"]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["files"] > 0 and 0 < result["bits_per_sample"] < 16 and result["unigram_bits_per_sample"] > 0


def test_keys_without_an_anchor_carry_no_prefix_and_a_stray_key_is_named():
    assert pipeline.key_prefix(["weights.a", "weights.b"]) == ""
    model = helpers.lm(0, torch.float32, bits=8, d_model=4, n_layers=1, pool=[2, 2], n_ssm=1, d_state=2)
    state = {**pipeline_layout(model.state_dict(), "pipeline-v4"), "optimizer.step": torch.zeros(())}
    with pytest.raises(pipeline.LayoutError, match=r"unexpected key 'optimizer.step': a pipeline state dict holds"):
        pipeline.convert(state, "pipeline-v4")

    model16 = helpers.lm(0, torch.float32, bits=16, d_model=4, n_layers=1, pool=[2, 2], n_ssm=1, d_state=2)
    ours = pipeline.convert(pipeline_layout(model16.state_dict(), "pipeline-v4"), "pipeline-v4")
    assert pipeline.infer_config(ours, "exp").bits == 16
    ours["encoder.embedding.weight"] = ours["encoder.embedding.weight"][:100]
    with pytest.raises(pipeline.LayoutError, match=r"the embedding has 100 classes; only 8-bit \(256\)"):
        pipeline.infer_config(ours, "exp")

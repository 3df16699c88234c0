"""Published weights: strict loading, the interop check on the published fixture and on a
fixture of another configuration built from the float64 reference, and import."""

import json

import numpy as np
import pytest
import torch

from reference import layer as ref_layer
from reference import sashimi as ref
from sashimi import interop as interop_cmd
from sashimi.core.config import ModelConfig
from sashimi.harness import published
from sashimi.io import checkpoint, interop
from sashimi.model.backbone import Backbone
from sashimi.model.lm import SashimiLM
from tests.helpers import numpy_state, pipeline_layout


def test_published_fixture_passes(capsys):
    from tests.helpers import PUBLISHED

    assert interop_cmd.main(["check", str(PUBLISHED / "standalone_small.npz")]) == 0
    out = capsys.readouterr().out
    assert "15 of 15 checks pass" in out and "float32 step (teacher-forced)" in out


def published_layout(state: dict) -> dict:
    """Our state dict in the published layout: pool and FF linears as Conv1d weights (out, in, 1)."""
    out = {}
    for k, v in state.items():
        v = np.asarray(v)
        conv = (
            k.endswith("linear.weight")
            and not k.endswith("output_linear.0.weight")
            or k.endswith(("ff.0.0.weight", "ff.2.weight"))
        )
        out[k] = v[..., None] if conv else v
    return out


def write_fixture(tmp_path, kwargs: dict, n_ssm, B=2, L=32, seed=0, tamper=False):
    """A fixture in the published format whose expected outputs come from the float64 reference."""
    torch.manual_seed(seed)
    model = Backbone(ModelConfig(**kwargs, n_ssm=n_ssm)).double()
    x = torch.randn(B, L, kwargs["d_model"], dtype=torch.float64)
    with torch.no_grad():
        model(x)  # fresh kernels write C~ and l_kernel, as the published first forward does
    state = numpy_state(model)
    arrays = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in published_layout(state).items()}
    # expected outputs from the float32 weights as stored, cast to float64 (as the published fixture does)
    exact = {k: v.astype(np.float32).astype(np.float64) if v.dtype == np.float64 else v for k, v in state.items()}
    arrays["x_input"] = x.float().numpy()
    exact_x = arrays["x_input"].astype(np.float64)
    arrays["y_conv_float64"] = ref.backbone(
        {k: np.asarray(v, np.float64) for k, v in exact.items()}, {"pool": kwargs["pool"]}, exact_x
    )
    s4_layers = {}
    for name, module in model.named_modules():
        if name.endswith(".layer") and hasattr(module, "layer") and hasattr(module.layer, "kernel"):
            l_kernel = int(module.layer.kernel.l_kernel)
            sub = {k[len(name) + 1 :]: np.asarray(v, np.float64) for k, v in exact.items() if k.startswith(name + ".")}
            arrays[f"kernel_float64.{name}"] = ref_layer.s4_kernel(sub, l_kernel)[None]
            s4_layers[name] = {"l_kernel": l_kernel}
    if tamper:
        key = next(k for k in arrays if k.endswith("kernel.B"))
        arrays[key] = arrays[key] * 1.001
    path = tmp_path / "fixture_b.npz"
    np.savez(path, **arrays)
    meta = {
        "constructor_kwargs": {**kwargs, "bidirectional": False, "unet": False},
        "batch": B,
        "length": L,
        "s4_layers": s4_layers,
    }
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


B_CONFIG = dict(d_model=8, n_layers=1, pool=[2, 4], expand=2, ff=2, dropout=0.0)


@pytest.mark.parametrize("n_ssm", [1, None])
def test_check_is_general_over_configurations(tmp_path, n_ssm, capsys):
    path = write_fixture(tmp_path, B_CONFIG, n_ssm)
    assert interop_cmd.main(["check", str(path)]) == 0, capsys.readouterr().out


def test_check_fails_on_wrong_weights(tmp_path, capsys):
    path = write_fixture(tmp_path, B_CONFIG, 1, tamper=True)
    assert interop_cmd.main(["check", str(path)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_strict_loading_lists_missing_and_unexpected_keys():
    model = Backbone(ModelConfig(d_model=4, n_layers=1, pool=[2, 2], n_ssm=1, d_state=4))
    state = published_layout(numpy_state(model))
    state.pop("norm.weight")
    state["norm.extra"] = np.zeros(1)
    state["d_layers.0.linear.bias"] = np.zeros(3)
    with pytest.raises(interop.InteropError) as e:
        interop.convert_state(state, model)
    message = str(e.value)
    assert "missing keys (1): norm.weight" in message
    assert "unexpected keys (1): norm.extra" in message
    assert "d_layers.0.linear.bias: published (3,) vs ours (8,)" in message


def test_n_ssm_is_read_off_the_weights():
    for n_ssm in (1, None, 2):
        model = Backbone(ModelConfig(d_model=4, n_layers=1, pool=[2, 2], n_ssm=n_ssm, d_state=4))
        kwargs = interop.backbone_kwargs({"d_model": 4, "n_layers": 1, "pool": [2, 2]}, numpy_state(model))
        assert kwargs["n_ssm"] == n_ssm and kwargs["d_state"] == 4


def test_unsupported_options_are_refused():
    with pytest.raises(interop.InteropError, match="unet=True"):
        interop.backbone_kwargs({"unet": True}, {})


def test_import_writes_a_loadable_checkpoint(tmp_path, capsys):
    path = write_fixture(tmp_path, B_CONFIG, 1)
    out = tmp_path / "imported.pt"
    assert interop_cmd.main(["import", str(path), "--config", str(path.with_suffix(".json")), "--out", str(out)]) == 0
    payload = checkpoint.load(out)
    from sashimi.core.config import ModelConfig

    model = SashimiLM(ModelConfig(**payload["config"]["model"]))
    model.load_state_dict(payload["model"], strict=True)
    arrays = np.load(path)
    assert np.array_equal(
        model.backbone.d_layers[0].linear.weight.detach().numpy(), arrays["d_layers.0.linear.weight"][..., 0]
    )
    assert model.config.n_ssm == 1


def test_missing_fixture_is_a_one_line_error(tmp_path, capsys):
    assert interop_cmd.main(["check", str(tmp_path / "nope.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: fixture not found") and err.count("\n") == 1


@pytest.mark.parametrize("rate", [1000, 384000, 999, 384001])
def test_import_records_the_given_sample_rate_within_its_inclusive_limits(rate, tmp_path, capsys):
    """--sample-rate anywhere in [1000, 384000] Hz, both limits included, is the rate the checkpoint
    records (and generate writes at); one past either limit is refused, and nothing is written."""
    from tests.helpers import PUBLISHED

    out = tmp_path / "imported.pt"
    argv = ["import", str(PUBLISHED / "pipeline_v4.npz"), "--sample-rate", str(rate)]
    code = interop_cmd.main([*argv, "--out", str(out)])
    if 1000 <= rate <= 384000:
        assert code == 0 and checkpoint.load(out)["config"]["train"]["sample_rate"] == rate
        assert f"at {rate} Hz" in capsys.readouterr().out
    else:
        assert code == 2 and "--sample-rate must be a finite number in [1000, 384000]" in capsys.readouterr().err
        assert not out.exists()


def test_interop_flags_parse_as_their_help_says():
    parser = interop_cmd.make_parser()
    helps = parser.format_help()
    assert "compare against a published fixture" in helps and "published state dict (.pt, .ckpt or .npz)" in helps
    args = parser.parse_args(["import", "m.pt", "--out", "o.pt", "--bits", "8", "--dt-transform", "softplus"])
    assert (args.command, args.bits, args.dt_transform) == ("import", 8, "softplus")
    assert parser.parse_args(["check", "f.npz", "--dt-transform", "exp"]).dt_transform == "exp"
    bad = [["import", "m.pt", "--out", "o", "--dt-transform", "relu"], ["check", "f.npz", "--dt-transform", "id"]]
    for argv in [*bad, ["import", "m.pt", "--out", "o", "--quantization", "cubic"]]:
        with pytest.raises(SystemExit):
            parser.parse_args(argv)


def test_standalone_kwargs_left_out_take_the_official_constructor_defaults(tmp_path):
    """The official standalone Sashimi(d_model=64, n_layers=8, pool=[4, 4], expand=2, ff=2, dropout=0.0)
    (state-spaces/s4, models/sashimi/sashimi.py): a kwargs file that leaves a field out means that
    default; the classes are --bits, 8 unless given."""
    torch.manual_seed(0)
    config = ModelConfig(bits=16, d_model=4, n_layers=8, pool=[4, 4], expand=2, ff=2, n_ssm=1, d_state=2)
    state = SashimiLM(config).backbone.state_dict()
    c = interop.standalone_model(state, {"d_model": 4}, bits=16).model.config
    assert (c.bits, c.n_layers, c.pool, c.expand, c.ff, c.dropout) == (16, 8, [4, 4], 2, 2, 0.0)
    torch.save(state, tmp_path / "backbone.pt")
    assert interop.import_file(tmp_path / "backbone.pt").model.config.bits == 8


def test_a_transform_given_for_a_v4_state_dict_is_noted_as_given():
    model = SashimiLM(ModelConfig(bits=8, d_model=4, n_layers=1, pool=[2, 2], n_ssm=1, d_state=2))
    imported = interop.pipeline_model(pipeline_layout(model.state_dict(), "pipeline-v4"), "pipeline-v4", "softplus")
    assert imported.notes == ["Delta = softplus(inv_dt) (as given: --dt-transform, or the fixture's sidecar)"]


OTHER_SHAPES = ["pipeline_v4_pool2x4", "pipeline_v3.0.0_depth3"]


@pytest.mark.parametrize("stem", OTHER_SHAPES)
def test_official_fixtures_of_other_shapes_pass_every_row(stem, capsys):
    """Made by the official pipeline at other widths, depths, pools, state sizes, FF and weight scales
    (tools/README.md, "Other shapes"): every row, float64 relative to the size of the logits."""
    from tests.helpers import PUBLISHED

    assert interop_cmd.main(["check", str(PUBLISHED / f"{stem}.npz")]) == 0
    assert "6 of 6 checks pass" in capsys.readouterr().out
    logits = np.load(PUBLISHED / f"{stem}.npz")["fixture/logits_f64"]
    forward = [v for v in published.check(PUBLISHED / f"{stem}.npz") if "float64 forward vs" in v.name]
    assert len(forward) == 1 and forward[0].row == "interop_float64"
    assert forward[0].scale == float(np.abs(logits).max()) > 5  # logits larger than the small model's
    assert forward[0].bound == pytest.approx(1e-15 + 1e-13 * forward[0].scale, rel=1e-12)

"""Real training runs' files: Lightning checkpoints whose hyper-parameters hold any class (read as inert
records, no stored code run), state dicts whose keys carry a wrapper's prefix (found and named),
`interop check` naming the other Delta transform when it would pass, and a fixture's sidecar read
on `interop import`.

tests/io/lightning_dictconfig.ckpt holds what a Lightning run of the official pipeline pickles: an
omegaconf DictConfig (with an interpolation) under `hyper_parameters`, beside a small state dict.
It was written with omegaconf 2.4 installed, which the tests do not need:
    OmegaConf.create({"model": {"_name_": "sashimi", "d_model": 64, "n_layers": 8, "pool": [4, 4],
                      "dropout": 0.0, "interp": "${model.d_model}"}, "train": {"seed": 0, "optimizer":
                      {"lr": 0.004}}, "dataset": {"_name_": "sc09", "bits": 8}})
    torch.save({"epoch": 3, "global_step": 120, "pytorch-lightning_version": "1.5.10", "state_dict":
                {"encoder.0.weight": torch.arange(6.0).reshape(3, 2)}, "hyper_parameters": {"config": cfg},
                "hparams_name": "config"}, "tests/io/lightning_dictconfig.ckpt")
"""

import argparse
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from sashimi import generate as generate_cmd
from sashimi import interop as interop_cmd
from sashimi.io import statefile
from sashimi.io.checkpoint import load_model
from tests.helpers import PUBLISHED, assert_one_line_error, lm, pipeline_layout, run_main

HERE = Path(__file__).parent


class Hyperparameters:
    """An ordinary class of a training script; unpickling it normally would run its __setstate__."""

    def __init__(self, marker):
        self.marker, self.lr, self.layers = str(marker), 4e-3, [4, 4]

    def __setstate__(self, state):
        Path(state["marker"]).write_text("ran")


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_dictconfig_checkpoint_reads_as_its_state_dict():
    state = statefile.read_state_dict(HERE / "lightning_dictconfig.ckpt")
    assert list(state) == ["encoder.0.weight"] and torch.equal(
        state["encoder.0.weight"], torch.arange(6.0).reshape(3, 2)
    )


def tiny_pipeline_state():
    model = lm(0, torch.float32, bits=8, d_model=2, n_layers=1, pool=[2, 2], expand=2, ff=0, n_ssm=1, d_state=2)
    return model, pipeline_layout(model.state_dict(), "pipeline-v4")


@pytest.mark.parametrize("prefix", ["", "model.", "module.", "_orig_mod.model."])
def test_lightning_hyperparameters_of_any_class_and_a_key_prefix(prefix, tmp_path, capsys):
    model, state = tiny_pipeline_state()
    marker = tmp_path / "ran"
    hparams = {
        "args": argparse.Namespace(lr=4e-3, sub=argparse.Namespace(pool=[4, 4])),
        "obj": Hyperparameters(marker),
        "exploit": Exploit(marker),
        "path": Path("/data"),
        "kinds": {"a", "b"},
    }
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {prefix + k: v for k, v in state.items()}, "hyper_parameters": hparams, "epoch": 3}, path)
    code = interop_cmd.main(["import", str(path), "--dt-transform", "exp", "--out", str(tmp_path / "m.pt")])
    out = capsys.readouterr().out
    assert code == 0 and not marker.exists()
    assert (f"note: every key carried the prefix {prefix!r}" in out) == bool(prefix), out
    imported, _ = load_model(tmp_path / "m.pt")
    folded = {
        k for k in model.state_dict() if re.fullmatch(r"backbone\.(d_layers\.\d|u_layers\.\d\.0)\.linear\.weight", k)
    }
    assert len(folded) == 4  # the pool linears, stored weight-normed: W = g v / ||v|| is recomputed, not copied
    assert all(torch.equal(imported.state_dict()[k], v) for k, v in model.state_dict().items() if k not in folded)


def test_a_prefix_on_only_some_keys_is_named(tmp_path, capsys):
    _, state = tiny_pipeline_state()
    mixed = {"net." + k: v for k, v in state.items()}
    bare = sorted(k for k in state if k.startswith("model."))[0]
    mixed[bare] = mixed.pop("net." + bare)
    path = tmp_path / "mixed.pt"
    torch.save(mixed, path)
    code, err = run_main(interop_cmd, ["import", str(path), "--out", str(tmp_path / "m.pt")], capsys)
    assert_one_line_error(code, err, "the keys carry the prefix 'net.'", f"{bare!r} does not")


def test_a_standalone_backbone_with_a_prefix(tmp_path, capsys):
    model = lm(1, torch.float32, bits=8, d_model=2, n_layers=1, pool=[2, 2], expand=2, ff=0, n_ssm=1, d_state=2)
    path = tmp_path / "backbone.pt"
    torch.save({"module." + k: v for k, v in model.backbone.state_dict().items()}, path)
    assert interop_cmd.main(["import", str(path), "--out", str(tmp_path / "m.pt")]) == 0
    out = capsys.readouterr().out
    assert out.index("note: every key carried the prefix 'module.'") < out.index("note: embedding and decoder")
    imported, _ = load_model(tmp_path / "m.pt")
    assert all(torch.equal(imported.backbone.state_dict()[k], v) for k, v in model.backbone.state_dict().items())


@pytest.mark.nightly  # interop check run under both transforms, 5 s (README, "Tests")
def test_check_without_a_sidecar_names_the_transform_that_passes(tmp_path, capsys):
    fixture = tmp_path / "v4.npz"
    shutil.copy(PUBLISHED / "pipeline_v4.npz", fixture)  # its sidecar (softplus) left behind
    assert interop_cmd.main(["check", str(fixture)]) == 1
    out = capsys.readouterr().out
    assert "note: every check passes with Delta = softplus(inv_dt): rerun with --dt-transform softplus" in out, out
    assert interop_cmd.main(["check", str(fixture), "--dt-transform", "softplus"]) == 0
    assert "note:" not in capsys.readouterr().out
    # a transform the user named is checked as named: it fails, without advice to use another
    assert interop_cmd.main(["check", str(fixture), "--dt-transform", "exp"]) == 1
    assert "note:" not in capsys.readouterr().out


def test_import_reads_the_fixture_sidecar(tmp_path, capsys):
    assert json.loads((PUBLISHED / "pipeline_v4.json").read_text())["dt_transform"] == "softplus"
    assert interop_cmd.main(["import", str(PUBLISHED / "pipeline_v4.npz"), "--out", str(tmp_path / "m.pt")]) == 0
    assert f"read {PUBLISHED / 'pipeline_v4.json'} beside it: dt_transform softplus" in capsys.readouterr().out
    model, _ = load_model(tmp_path / "m.pt")
    assert model.config.dt_transform == "softplus"


def test_a_lightning_ckpt_imports_with_the_v4_default_and_says_so(tmp_path, capsys):
    """Only the v4 pipeline's training writes a Lightning .ckpt, and its Delta default is softplus;
    the same state dict as a plain .pt keeps the exp default (released v4 files are v3 conversions)."""
    model, state = tiny_pipeline_state()
    ckpt, pt = tmp_path / "last.ckpt", tmp_path / "plain.pt"
    torch.save({"state_dict": state, "hyper_parameters": {"obj": Hyperparameters(tmp_path / "m")}}, ckpt)
    torch.save(state, pt)
    assert interop_cmd.main(["import", str(ckpt), "--out", str(tmp_path / "c.pt")]) == 0
    out = capsys.readouterr().out
    assert "note: Delta = softplus(inv_dt): default softplus: a Lightning .ckpt is written by the v4" in out, out
    assert load_model(tmp_path / "c.pt")[0].config.dt_transform == "softplus"
    assert interop_cmd.main(["import", str(pt), "--out", str(tmp_path / "p.pt")]) == 0
    assert "note: Delta = exp(inv_dt): default exp" in capsys.readouterr().out
    assert load_model(tmp_path / "p.pt")[0].config.dt_transform == "exp"
    assert interop_cmd.main(["import", str(ckpt), "--dt-transform", "exp", "--out", str(tmp_path / "e.pt")]) == 0
    assert load_model(tmp_path / "e.pt")[0].config.dt_transform == "exp"  # a transform given wins


def test_generate_on_a_released_file_names_interop_import(tmp_path, capsys):
    _, state = tiny_pipeline_state()
    ckpt, pt = tmp_path / "last.ckpt", tmp_path / "sc09.pt"
    torch.save({"state_dict": state, "hyper_parameters": {"obj": Hyperparameters(tmp_path / "m")}}, ckpt)
    torch.save(state, pt)
    for path, what in ((ckpt, "it holds objects the safe loader refuses"), (pt, "is a state dict of another")):
        code, err = run_main(generate_cmd, ["--checkpoint", str(path), "--length", "2"], capsys)
        assert_one_line_error(code, err, what, f"python -m sashimi.interop import {path} --out model.pt")
        assert "\x1b" not in err and "weights_only" not in err

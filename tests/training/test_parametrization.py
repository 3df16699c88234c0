"""--parametrization pipeline: the pool linears trained as the official pipeline trains them (weight
norm, W = g v / ||v|| per output row, with g and v the parameters), from a fresh model, an imported
checkpoint that keeps the file's g and v, or one converted at --init; the official training fixtures'
3 steps through `optimization_step`, which the plain parametrization does not reproduce."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from sashimi import interop as interop_cmd
from sashimi import train as train_cmd
from sashimi.core.config import ModelConfig, OptimizerConfig
from sashimi.harness.published_training import RECORDS
from sashimi.io import checkpoint, pipeline
from sashimi.io.interop import pipeline_model
from sashimi.model import native
from sashimi.model.fused import FusedStep
from sashimi.model.lm import SashimiLM
from sashimi.model.native import NativeStep
from sashimi.training import loop, runs
from sashimi.training.metrics import LossModel
from sashimi.training.optimizer import adamw, optimization_step, param_groups
from tests.helpers import PUBLISHED, assert_one_line_error, run_main, train_config

POOL = "backbone.d_layers.0.linear"
G, V = POOL + ".parametrizations.weight.original0", POOL + ".parametrizations.weight.original1"


def pool_weights(model: SashimiLM) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach().clone() for n, m in model.named_modules() if n.endswith(".linear")}


@pytest.mark.parametrize("config", [dict(d_model=6, pool=[2, 3], expand=2), dict(d_model=5, pool=[4], expand=1)])
def test_weight_norm_keeps_the_function_and_counts_g(config):
    """Switching to weight norm sets g = ||W|| per row and v = W (NumPy's norms): the same weights, the
    same logits; one g per output row of every pool linear, and a state dict that loads back."""
    torch.manual_seed(0)
    model = SashimiLM(ModelConfig(n_layers=1, d_state=4, **config)).double()
    x = torch.randint(0, 256, (2, 2 * math.prod(config["pool"])))
    before, plain, count = model(x).detach(), pool_weights(model), model.num_params()
    model.parametrize("pipeline")
    state = model.state_dict()
    W = plain[POOL].numpy()
    assert np.allclose(state[G].numpy()[:, 0], np.linalg.norm(W, axis=1), rtol=1e-15, atol=0)
    assert torch.equal(state[V], plain[POOL])
    outs = sum(w.shape[0] for w in plain.values())
    assert model.config.parametrization == "pipeline" and model.num_params() == count + outs
    torch.testing.assert_close(model(x).detach(), before, rtol=1e-14, atol=1e-14)
    again = SashimiLM(model.config).double()
    again.load_state_dict(state, strict=True)
    assert torch.equal(again(x).detach(), model(x).detach())
    model.parametrize("plain")
    assert model.num_params() == count and sorted(model.state_dict()) == sorted(SashimiLM(model.config).state_dict())
    torch.testing.assert_close(pool_weights(model), plain, rtol=1e-15, atol=1e-15)


def test_import_keeps_the_files_g_and_v(tmp_path, capsys):
    """`interop import --parametrization pipeline` stores the file's g and v as they are (W is never
    formed), and the model computes what the folded import computes."""
    source = PUBLISHED / "pipeline_v4.npz"
    out = tmp_path / "imported.pt"
    code = interop_cmd.main(["import", str(source), "--out", str(out), "--parametrization", "pipeline"])
    text = capsys.readouterr().out
    assert code == 0 and "pool weights pipeline" in text and "keep the file's weight norm (g, v)" in text
    saved = checkpoint.load(out)
    arrays = np.load(source)
    g, v = (arrays["model.d_layers.0.linear.weight_" + h] for h in "gv")
    assert np.array_equal(saved["model"][G].numpy(), g) and np.array_equal(saved["model"][V].numpy(), v)
    assert saved["config"]["model"]["parametrization"] == "pipeline"
    normed = SashimiLM(ModelConfig(**saved["config"]["model"]))
    normed.load_state_dict(saved["model"])
    state = {k: torch.from_numpy(arrays[k]) for k in arrays.files if not k.startswith(("fixture/", "init."))}
    folded = pipeline_model(state, "pipeline-v4", "softplus").model
    x = torch.randint(0, 256, (1, 32))
    with torch.no_grad():
        torch.testing.assert_close(normed(x), folded(x), rtol=1e-5, atol=1e-5)


def three_steps(stem: str, parametrization: str) -> tuple[dict, dict, str]:
    """Our model from an official training fixture's state, 3 steps of `optimization_step` as
    sashimi.train takes them; (our state dict after, the fixture's arrays, its layout)."""
    arrays = dict(np.load(PUBLISHED / f"{stem}.npz"))
    meta = json.loads((PUBLISHED / f"{stem}.json").read_text())
    state = {k: torch.from_numpy(v) for k, v in arrays.items() if not k.startswith(RECORDS)}
    layout = pipeline.detect_layout(state)
    lm = pipeline_model(state, layout, meta["dt_transform"], torch.float64, parametrization=parametrization).model
    spec = dataclasses.replace(OptimizerConfig.from_specs(), weight_decay=meta["optimizer"]["weight_decay"])
    optimizer = adamw(param_groups(lm.train(), meta["optimizer"]["lr"], spec.ssm_lr, spec), spec)
    x, y = (torch.from_numpy(arrays[k]) for k in ("train/tokens", "train/targets"))
    clip = meta["gradient_clip_val"] or math.inf
    for _ in range(meta["steps"]):
        optimization_step(LossModel(lm), lm, optimizer, x, y, clip)
    return {k: v.detach() for k, v in lm.state_dict().items()}, arrays, layout


@pytest.mark.slow  # two 3-step runs (the v3 fixture's weight-normed steps: interop check's own-step row)
@pytest.mark.parametrize("stem", ["training_v4_clip"])
def test_only_weight_norm_reproduces_the_official_steps(stem):
    """After 3 steps, each pool linear's W = g v / ||v|| (the official's g and v, folded in NumPy): ours
    trained weight-normed lands within 1e-11 of it; trained plain it lands over 1e-6 away (the two
    parametrizations take different steps from the same W)."""
    files = np.load(PUBLISHED / f"{stem}.npz").files
    names = sorted(
        k[len("step3/model.") : -len(".weight_g")] for k in files if k.startswith("step3/") and k.endswith("_g")
    )
    assert names  # every pool linear of the fixture
    normed, arrays, _ = three_steps(stem, "pipeline")
    plain, _, _ = three_steps(stem, "plain")
    for name in names:
        g, v = arrays[f"step3/model.{name}.weight_g"], arrays[f"step3/model.{name}.weight_v"]
        W = g.reshape(-1, 1) * v / np.linalg.norm(v, axis=1, keepdims=True)
        g_ours, v_ours = (normed[f"backbone.{name}.parametrizations.weight.original{i}"].numpy() for i in (0, 1))
        assert np.abs(g_ours.reshape(-1, 1) * v_ours / np.linalg.norm(v_ours, axis=1, keepdims=True) - W).max() < 1e-11
        assert np.abs(plain[f"backbone.{name}.weight"].numpy() - W).max() > 1e-6, name


def test_init_converts_a_plain_checkpoint_and_resume_keeps_it(audio_folder, tmp_path):
    """--init of a plain checkpoint with --parametrization pipeline: the run trains g and v from the
    checkpoint's W (learning rates 0: W unchanged after a step), and its checkpoint says so."""
    out = tmp_path / "imported.pt"
    assert interop_cmd.main(["import", str(PUBLISHED / "pipeline_v3.0.0.npz"), "--out", str(out)]) == 0
    start = checkpoint.load(out)
    run_dir = loop.train(
        train_config(
            audio_folder, tmp_path / "runs", init=str(out), parametrization="pipeline", lr=0.0, ssm_lr=0.0, max_steps=1
        )
    )
    after = checkpoint.load(run_dir / "checkpoint.pt")
    assert after["config"]["model"]["parametrization"] == "pipeline"
    model = SashimiLM(ModelConfig(**after["config"]["model"]))
    model.load_state_dict(after["model"])
    W = start["model"][POOL + ".weight"].numpy()
    assert np.allclose(pool_weights(model)[POOL].numpy(), W, rtol=1e-6, atol=1e-7)
    resumed = runs.starting_point(train_config(audio_folder, tmp_path / "runs", resume=str(run_dir), max_steps=2))
    assert resumed.model_config.parametrization == "pipeline"


def test_an_unknown_parametrization_is_one_error(capsys):
    code, err = run_main(train_cmd, ["--parametrization", "weightnorm", "--max-steps", "1"], capsys)
    assert_one_line_error(code, err, "--parametrization must be one of plain, pipeline", "'weightnorm'")


def test_the_fused_and_native_steps_read_a_weight_normed_model_as_its_weights():
    """The steps pack W = g v / ||v|| when they are built: a weight-normed model generates the logits
    its folded twin generates (float64, the fused step; the native one where it is built)."""
    torch.manual_seed(1)
    plain = SashimiLM(ModelConfig(d_model=6, n_layers=1, pool=[2, 2], d_state=4)).double().eval()
    normed = SashimiLM(plain.config).double().eval()
    normed.load_state_dict(plain.state_dict())
    normed.parametrize("pipeline")
    x = torch.randint(0, 256, (2, 12))
    makers = [FusedStep] + ([lambda m, b: NativeStep(m, b, 1)] if native.available() else [])
    for make in makers:
        got = []
        for model in (plain, normed):
            model.setup_step()
            step = make(model, 2)
            got.append(torch.stack([step.step(x[:, t]) for t in range(x.shape[1])], 1))
        torch.testing.assert_close(got[1], got[0], rtol=1e-13, atol=1e-13)


def test_a_standalone_backbone_is_weight_normed_from_its_weights(tmp_path, capsys):
    """The standalone state holds W alone: --parametrization pipeline starts g and v from it (g = ||W||
    per row, v = W) and says so."""
    out = tmp_path / "standalone.pt"
    argv = ["import", str(PUBLISHED / "standalone_small.npz"), "--out", str(out), "--parametrization", "pipeline"]
    assert interop_cmd.main(argv) == 0
    assert "from g = ||W|| per row and v = W" in capsys.readouterr().out
    saved = checkpoint.load(out)["model"]
    W = np.load(PUBLISHED / "standalone_small.npz")["d_layers.0.linear.weight"][..., 0]  # a Conv1d of width 1
    assert np.array_equal(saved[V].numpy(), W.astype(saved[V].numpy().dtype))
    assert np.allclose(saved[G].numpy()[:, 0], np.linalg.norm(W, axis=1), rtol=1e-6, atol=0)


def test_import_refuses_an_unknown_parametrization_before_reading_the_file(tmp_path, capsys):
    argv = ["import", str(tmp_path / "absent.pt"), "--out", str(tmp_path / "x.pt"), "--parametrization", "weightnorm"]
    with pytest.raises(SystemExit) as stop:
        interop_cmd.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "--parametrization: invalid choice: 'weightnorm'" in err, err
    assert not (tmp_path / "x.pt").exists()

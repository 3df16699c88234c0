"""`python -m sashimi.export --onnx`: the step as an ONNX graph, run by onnxruntime against the
modules' own step (`SashimiLM.step`, the oracle of every step) within the row
onnx_vs_module_step_float32, at batch sizes other than the one it was exported at; what the command
refuses and what it leaves on disk. One export (seconds of torch.onnx) serves the whole file."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sashimi import export
from sashimi.harness.verdict import assert_close
from sashimi.io import checkpoint, onnx
from tests.helpers import assert_one_line_error, lm, run_main, tiny_config

needs_extras = pytest.mark.skipif(onnx.missing_extras() is not None, reason=f"needs the export extras: {onnx.EXTRAS}")


@pytest.fixture
def ckpt(tmp_path):
    model = lm(3, torch.float32, **{**tiny_config(8).to_dict(), "pool": [4]})  # one pool of 4, one layer a depth
    return checkpoint.save(
        {"model": model.state_dict(), "config": {"model": model.config.to_dict(), "train": {}}},
        tmp_path / "run" / "checkpoint.pt",
    )


def module_logits(model, x: torch.Tensor) -> torch.Tensor:
    state, out = model.default_state(x.shape[0]), []
    with torch.no_grad():
        for t in range(x.shape[1]):
            logits, state = model.step(x[:, t], state)
            out.append(logits)
    return torch.stack(out, 1)


@pytest.mark.first  # one of the suite's longest (the export): started first so that the workers end together
@needs_extras
def test_the_exported_step_runs_in_onnxruntime_as_the_models_step(ckpt, tmp_path, capsys, monkeypatch):
    out = tmp_path / "graphs" / "step.onnx"  # its folder is made
    code = export.main([str(ckpt), "--onnx", str(out), "--check-steps", "40"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert f"exporting the step of {ckpt} (8-bit, d_model 8): torch.onnx traces it" in printed.out
    assert "checked: 40 samples in onnxruntime against the model's step, worst error " in printed.out
    assert f"of the bound of onnx_vs_module_step_float32)\nwrote {out} (" in printed.out
    assert [p.name for p in out.parent.iterdir()] == ["step.onnx"]  # nothing staged left beside it

    # 150 samples at each of two batch sizes other than the export's, from the zero state
    model, _ = checkpoint.load_model(ckpt)
    model.setup_step()
    for batch, seed in ((1, 1), (3, 2)):
        x = torch.randint(0, 256, (batch, 150), generator=torch.Generator().manual_seed(seed))
        step = onnx.OnnxStep(out, batch)
        got = torch.stack([step.step(x[:, t]) for t in range(x.shape[1])], 1)
        assert_close(got, module_logits(model, x), "onnx_vs_module_step_float32")

    # the graph's interface, as the module docstring and the README give it
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    assert list(inputs)[:3] == ["tokens", "t", "buffer_0"] and inputs["tokens"].type == "tensor(int64)"
    assert inputs["t"].shape == [] and inputs["state_0"].type == "tensor(float)"
    assert isinstance(inputs["tokens"].shape[0], str)  # the batch is free
    names = [o.name for o in session.get_outputs()]
    assert names == ["logits", *(f"{n}_next" for n in list(inputs)[1:])]

    # the README's generation from onnxruntime alone runs on it, feeding the state back each sample
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    snippet = readme.split("Generation driven from\nonnxruntime alone")[1].split("```python\n")[1].split("```")[0]
    assert '"step.onnx"' in snippet and "range(16000)" in snippet
    namespace = {}
    exec(snippet.replace('"step.onnx"', repr(str(out))).replace("range(16000)", "range(100)"), namespace)
    assert len(namespace["tokens"]) == 100 and all(0 <= t < 256 for t in namespace["tokens"])
    assert int(namespace["state"]["t"]) == 100 and len(set(namespace["tokens"])) > 10

    # an existing file is kept unless --overwrite; a graph that fails its check is not written
    before = out.read_bytes()
    code, err = run_main(export, [str(ckpt), "--onnx", str(out)], capsys)
    assert_one_line_error(code, err, f"--onnx {out} exists: give a new path, or --overwrite to replace it")
    monkeypatch.setattr(export, "export_onnx", lambda model, path: shutil.copy(out, path) and path)
    real = export.OnnxStep.step
    monkeypatch.setattr(export.OnnxStep, "step", lambda self, tokens: real(self, tokens) + 1e-3)
    wrong = tmp_path / "wrong.onnx"
    code, err = run_main(export, [str(ckpt), "--onnx", str(wrong), "--check-steps", "9"], capsys)
    assert_one_line_error(code, err, "onnxruntime's logits differ from the model's step by up to 0.001", "nothing was")
    assert not wrong.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["graphs", "run"]
    assert out.read_bytes() == before


def test_the_check_judges_by_the_rows_bound(ckpt, tmp_path, monkeypatch):
    """`check_export` compares onnxruntime's logits with the model's step's, sample by sample (here a
    stand-in runtime that is the model's step itself, then that step off by 1e-3)."""
    model, _ = checkpoint.load_model(ckpt)
    model.setup_step()

    class Itself:
        def __init__(self, path, batch, offset=0.0):
            self.state, self.offset = model.default_state(batch), offset

        def step(self, tokens):
            logits, self.state = model.step(tokens, self.state)
            return logits + self.offset

    monkeypatch.setattr(export, "OnnxStep", Itself)
    verdict = export.check_export(model, tmp_path / "unused.onnx", 30)
    assert verdict.passed and verdict.error == 0 and verdict.row == "onnx_vs_module_step_float32"
    monkeypatch.setattr(export, "OnnxStep", lambda path, batch: Itself(path, batch, 1e-3))
    verdict = export.check_export(model, tmp_path / "unused.onnx", 30)
    assert not verdict.passed and verdict.error == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--onnx", "step.pt"], "--onnx takes a path ending in .onnx; got step.pt"),
        (["--onnx", "s.onnx", "--check-steps", "-1"], "--check-steps"),
    ],
)
def test_bad_requests_are_one_error_before_any_work(argv, needle, ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(export, "load_model", lambda *a: pytest.fail("the checkpoint was read"))
    code, err = run_main(export, [str(ckpt), *argv], capsys)
    assert_one_line_error(code, err, needle)
    assert not list(tmp_path.glob("*.onnx"))


@pytest.mark.parametrize("steps", [1, 8])
def test_a_check_too_short_to_reach_the_deepest_depth_is_refused(steps, ckpt, tmp_path, capsys):
    """Pools [4]: the deepest depth's output reaches the logits from sample 2 * 4 + 1 on."""
    code, err = run_main(export, [str(ckpt), "--onnx", str(tmp_path / "s.onnx"), "--check-steps", str(steps)], capsys)
    assert_one_line_error(code, err, f"--check-steps {steps} does not reach the model's deepest depth (pools [4]): ")
    assert "at least 9, or 0 for no check" in err and not list(tmp_path.glob("*.onnx"))


def test_no_check_writes_the_graph_unchecked(ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export, "missing_extras", lambda: None)
    monkeypatch.setattr(export, "export_onnx", lambda model, path: Path(path).write_bytes(b"graph") and Path(path))
    monkeypatch.setattr(export, "check_export", lambda *args: pytest.fail("checked"))
    out = tmp_path / "s.onnx"
    assert export.main([str(ckpt), "--onnx", str(out), "--check-steps", "0"]) == 0
    assert out.read_bytes() == b"graph" and "checked:" not in capsys.readouterr().out


@pytest.mark.parametrize("stop", [RuntimeError("torch.onnx could not export the step: X"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_export_leaves_nothing_behind(stop, ckpt, tmp_path, capsys, monkeypatch):
    (tmp_path / "kept").mkdir()  # a folder that was there stays

    def export_onnx(model, path):
        Path(path).write_bytes(b"half a graph")
        raise stop

    monkeypatch.setattr(export, "export_onnx", export_onnx)
    monkeypatch.setattr(export, "missing_extras", lambda: None)
    out = tmp_path / "kept" / "new" / "deeper" / "s.onnx"
    code = export.main([str(ckpt), "--onnx", str(out)])
    err = capsys.readouterr().err
    if isinstance(stop, KeyboardInterrupt):
        assert code == 130 and "interrupted: nothing written" in err and "Traceback" not in err
    else:
        assert_one_line_error(code, err, "torch.onnx could not export the step: X")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "kept",
        "run",
        "run/checkpoint.pt",
    ]


def test_an_onnxruntime_failure_is_a_runtime_error_naming_the_file(tmp_path):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a graph")
    with pytest.raises(RuntimeError, match=f"onnxruntime could not load {path}: "):
        onnx.OnnxStep(path, 1)


def test_export_flags_parse_as_their_help_says(capsys):
    parser = export.make_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["m.pt"])
    assert "the following arguments are required: --onnx" in capsys.readouterr().err
    args = parser.parse_args(["m.pt", "--onnx", "s.onnx"])
    assert (args.checkpoint, args.onnx, args.check_steps, args.overwrite) == ("m.pt", "s.onnx", 256, False)
    assert parser.parse_args(["m.pt", "--onnx", "s.onnx", "--check-steps", "9", "--overwrite"]).check_steps == 9
    text = " ".join(parser.format_help().split())
    assert text.startswith("usage: python -m sashimi.export [-h] --onnx OUT.onnx")
    assert "a checkpoint written by sashimi.train (or sashimi.interop import)" in text


def test_missing_extras_are_named_with_the_install_command(ckpt, tmp_path, capsys, monkeypatch):
    real = __import__

    def without_onnxscript(name, *args, **kwargs):
        if name == "onnxscript":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr("builtins.__import__", without_onnxscript)
    assert onnx.missing_extras() == "onnxscript"
    code, err = run_main(export, [str(ckpt), "--onnx", str(tmp_path / "s.onnx")], capsys)
    assert_one_line_error(code, err, "(onnxscript is not installed)", "pip install -c constraints.txt '.[export]'")


def test_an_exporter_failure_is_its_summary_line():
    text = "Failed to export.\n- advice\n## Exception summary\n\n<class 'X'>: what failed\n(more)"
    assert onnx.export_failure(RuntimeError(text)) == "<class 'X'>: what failed"
    assert onnx.export_failure(RuntimeError("\x1b[96mplain\x1b[0m message\nmore")) == "plain message"
    assert onnx.export_failure(RuntimeError("")) == "RuntimeError"


@needs_extras
def test_the_onnx_step_starts_from_zeros_of_each_inputs_shape(tmp_path, monkeypatch):
    """OnnxStep's state from the graph's declared inputs: the batch where the shape names it."""

    class Input:
        def __init__(self, name, shape, type):
            self.name, self.shape, self.type = name, shape, type

    class Session:
        def __init__(self, *args, **kwargs):
            pass

        def get_inputs(self):
            return [
                Input("tokens", ["batch"], "tensor(int64)"),
                Input("t", [], "tensor(int64)"),
                Input("buffer_0", ["batch", 3, 2], "tensor(float)"),
                Input("state_0", ["batch", 1, 2], "tensor(double)"),  # a float64 model's export
            ]

    import onnxruntime

    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    step = onnx.OnnxStep(tmp_path / "x.onnx", 5)
    assert [s.shape for s in step.state] == [(), (5, 3, 2), (5, 1, 2)]
    assert [s.dtype for s in step.state] == [np.int64, np.float32, np.float64]
    assert not any(s.any() for s in step.state)

"""train --init: a new run from a checkpoint's weights (ours or imported), weights only, with the
checkpoint's model configuration; conflicts are one-line errors."""

import pytest
import torch

from sashimi import interop as interop_cmd
from sashimi import train as train_cmd
from sashimi.core.config import ModelConfig
from sashimi.io import checkpoint
from sashimi.model.lm import SashimiLM
from sashimi.training import loop, runs
from tests.helpers import PUBLISHED, assert_one_line_error, losses, run_main, train_config


def imported(tmp_path) -> str:
    """The official v3 pipeline fixture's weights as our checkpoint (a model unlike any preset)."""
    out = tmp_path / "imported.pt"
    assert interop_cmd.main(["import", str(PUBLISHED / "pipeline_v3.0.0.npz"), "--out", str(out)]) == 0
    return str(out)


def test_init_starts_from_the_weights_with_a_fresh_optimizer(audio_folder, tmp_path, capsys):
    """With every learning rate 0, the weights after a step are the initial checkpoint's, bit for bit,
    and the run holds the checkpoint's model configuration (scalar norm, d_state 16), not the preset's."""
    init = imported(tmp_path)
    run_dir = loop.train(
        train_config(audio_folder, tmp_path / "runs", init=init, lr=0.0, ssm_lr=0.0, max_steps=1, eval_every=1)
    )
    start, after = checkpoint.load(init), checkpoint.load(run_dir / "checkpoint.pt")
    assert after["config"]["model"] == start["config"]["model"]
    assert after["config"]["model"]["norm"] == "scalar" and after["config"]["model"]["d_state"] == 16
    for key, value in start["model"].items():
        assert torch.equal(after["model"][key], value), key
    assert after["step"] == 1 and all(s["step"] == 1 for s in after["optimizer"]["state"].values())


def test_init_weights_move_when_trained(audio_folder, tmp_path):
    init = imported(tmp_path)
    run_dir = loop.train(train_config(audio_folder, tmp_path / "runs", init=init, max_steps=2))
    start, after = checkpoint.load(init)["model"], checkpoint.load(run_dir / "checkpoint.pt")["model"]
    assert any(not torch.equal(after[k], v) for k, v in start.items() if v.is_floating_point())


def test_init_with_other_bits_is_an_error(audio_folder, tmp_path, capsys):
    init = imported(tmp_path)
    code, err = run_main(
        train_cmd, ["--init", init, "--bits", "16", "--data", str(audio_folder), "--out", str(tmp_path / "r")], capsys
    )
    assert_one_line_error(code, err, "--bits 16 conflicts with --init", "8-bit model")


def test_init_and_resume_together_is_an_error(audio_folder, tmp_path, capsys):
    init = imported(tmp_path)
    code, err = run_main(train_cmd, ["--init", init, "--resume", init, "--data", str(audio_folder)], capsys)
    assert_one_line_error(code, err, "--resume", "--init", "give one of them")


def test_init_from_a_missing_file_is_an_error(tmp_path, capsys):
    code, err = run_main(train_cmd, ["--init", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "checkpoint not found")


SPEECH = PUBLISHED.parent / "data" / "speech"  # 12 one-second spoken digits (tests/data/speech/README.md)


@pytest.mark.slow
def test_fine_tuning_an_imported_model_on_speech_lowers_its_validation_loss(tmp_path):
    """`train --init` from the imported v4 pipeline fixture on real speech: the validation loss after
    8 steps is below the imported model's own (the same validation, read off a run with every
    learning rate 0, whose weights stay the imported ones)."""
    init = tmp_path / "imported.pt"
    assert interop_cmd.main(["import", str(PUBLISHED / "pipeline_v4.npz"), "--out", str(init)]) == 0
    run = dict(init=str(init), seq_len=512, batch_size=4, eval_batches=2)
    before = losses(
        loop.train(train_config(SPEECH, tmp_path / "frozen", lr=0.0, ssm_lr=0.0, max_steps=1, eval_every=1, **run)),
        "validation",
    )
    after = losses(loop.train(train_config(SPEECH, tmp_path / "tuned", max_steps=8, eval_every=8, **run)), "validation")
    assert list(before) == [1] and list(after) == [8]
    assert after[8] < before[1] - 0.05, (before, after)


def small_checkpoint(tmp_path, train: dict) -> str:
    """Our checkpoint of a small 8-bit model made for `train`'s audio settings."""
    model = SashimiLM(ModelConfig(d_model=4, n_layers=1, d_state=4))
    payload = {"config": {"model": model.config.to_dict(), "train": train}, "model": model.state_dict()}
    return str(checkpoint.save(payload, tmp_path / "small.pt"))


@pytest.mark.parametrize(
    "flags, want",
    [
        ([], ("linear", 8000)),
        (["--quantization", "mulaw"], ("mulaw", 8000)),
        (["--sample-rate", "16000"], ("linear", 16000)),
        (["--quantization", "mulaw", "--sample-rate", "22050"], ("mulaw", 22050)),
    ],
    ids=["checkpoint's", "--quantization", "--sample-rate", "both flags"],
)
def test_init_audio_settings_come_from_the_flags_then_the_checkpoint(flags, want, tmp_path):
    """What the command line leaves open, the checkpoint's training settings fill; a flag given wins."""
    init = small_checkpoint(tmp_path, {"quantization": "linear", "sample_rate": 8000, "seq_len": 64})
    start = runs.starting_point(train_cmd.parse_args(["--init", init, *flags]))
    assert (start.config.quantization, start.config.sample_rate) == want
    assert start.config.bits == 8 and start.init_state is not None


def test_init_dropout_reaches_the_model(tmp_path):
    """--dropout replaces the checkpoint's rate (0) in the model the run builds; without it the rate stays."""
    init = small_checkpoint(tmp_path, {})
    start = runs.starting_point(train_cmd.parse_args(["--init", init, "--dropout", "0.3"]))
    model = loop.Run(start.config, tmp_path, torch.device("cpu"), start.model_config).model
    rates = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout) or type(m).__name__ == "ChannelDropout"}
    assert model.config.dropout == 0.3 and rates == {0.3}
    assert runs.starting_point(train_cmd.parse_args(["--init", init])).model_config.dropout == 0.0


@pytest.mark.parametrize("convert", [[], ["--parametrization", "pipeline"]], ids=["as saved", "converted"])
def test_weights_that_do_not_fit_their_configuration_are_one_error(convert, audio_folder, tmp_path, capsys):
    """A checkpoint whose weights lack one its configuration needs is refused at --init, naming it,
    also when its pool linears are converted to another parametrization first."""
    init = imported(tmp_path)
    payload = checkpoint.load(init)
    del payload["model"]["decoder.output_transform.bias"]
    checkpoint.save(payload, tmp_path / "cut.pt")
    argv = ["--init", str(tmp_path / "cut.pt"), "--data", str(audio_folder), "--out", str(tmp_path / "runs"), *convert]
    code, err = run_main(train_cmd, [*argv, "--max-steps", "1", "--sample-seconds", "0"], capsys)
    assert_one_line_error(code, err, "weights do not fit its configuration", "decoder.output_transform.bias")


def test_a_checkpoint_whose_configuration_is_not_a_model_configuration_is_one_error(tmp_path, capsys):
    init = imported(tmp_path)
    payload = checkpoint.load(init)
    payload["config"]["model"]["d_modell"] = payload["config"]["model"].pop("d_model")
    checkpoint.save(payload, tmp_path / "typo.pt")
    code, err = run_main(train_cmd, ["--init", str(tmp_path / "typo.pt"), "--max-steps", "1"], capsys)
    assert_one_line_error(code, err, "its configuration is not a model configuration", "d_modell")

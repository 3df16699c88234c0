"""Checkpoints that cannot be used: truncated, or of another configuration."""

from sashimi import evaluate as evaluate_cmd
from sashimi import generate as generate_cmd
from sashimi.io import checkpoint
from tests.helpers import assert_one_line_error, run_main


def test_truncated_checkpoint(trained, tmp_path, capsys):
    broken = tmp_path / "truncated.pt"
    raw = (trained / "checkpoint.pt").read_bytes()
    broken.write_bytes(raw[: len(raw) // 2])
    code, err = run_main(generate_cmd, ["--checkpoint", str(broken), "--length", "10", "--out", str(tmp_path / "s")], capsys)
    assert_one_line_error(code, err, "truncated")
    code, err = run_main(evaluate_cmd, ["--checkpoint", str(broken), "--data", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "truncated")


def test_checkpoint_of_another_configuration(trained, tmp_path, capsys):
    payload = checkpoint.load(trained / "checkpoint.pt")
    payload["config"]["model"]["bits"] = 16  # weights are 8-bit
    other = checkpoint.save(payload, tmp_path / "other.pt")
    code, err = run_main(generate_cmd, ["--checkpoint", str(other), "--length", "10", "--out", str(tmp_path / "s")], capsys)
    assert_one_line_error(code, err, "do not fit", "16-bit")
    code, err = run_main(generate_cmd, ["--checkpoint", str(trained / "checkpoint.pt"), "--bits", "16", "--length", "10"], capsys)
    assert_one_line_error(code, err, "8-bit model", "--bits 16")

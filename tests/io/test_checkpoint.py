"""Checkpoints: a round trip keeps every value; an interrupted save keeps the previous file and
leaves nothing behind; files that are not plain-value sashimi checkpoints are refused; checkpoints
that cannot be used (truncated, of another configuration) are one-line errors of the commands."""

import os
import pickle
from pathlib import Path

import pytest
import torch

from sashimi import evaluate as evaluate_cmd
from sashimi import generate as generate_cmd
from sashimi.io import checkpoint
from tests.helpers import assert_one_line_error, run_main


class Foreign:
    """Not a plain value: a checkpoint holding one must not be unpickled."""

    def __reduce__(self):
        return (print, ("code ran while loading",))


def payload() -> dict:
    return {
        "config": {"model": {"bits": 8}, "train": {"seed": 3}},
        "model": {"w": torch.arange(6.0).reshape(2, 3)},
        "rng": {"torch": torch.get_rng_state()},
        "step": 7,
        "best_val": 1.25,
    }


def test_a_saved_checkpoint_loads_back_equal(tmp_path):
    original = payload()
    path = checkpoint.save(original, tmp_path / "deep" / "ck.pt")
    assert path == tmp_path / "deep" / "ck.pt"
    loaded = checkpoint.load(path)
    assert loaded.keys() == original.keys() and loaded["config"] == original["config"]
    assert torch.equal(loaded["model"]["w"], original["model"]["w"]) and torch.equal(
        loaded["rng"]["torch"], original["rng"]["torch"]
    )
    assert (loaded["step"], loaded["best_val"]) == (7, 1.25)
    assert [p.name for p in path.parent.iterdir()] == ["ck.pt"]


def test_a_failed_save_keeps_the_previous_checkpoint_and_leaves_no_temporary_file(tmp_path):
    path = checkpoint.save(payload(), tmp_path / "ck.pt")
    before = path.read_bytes()
    broken = {**payload(), "step": lambda: 0}  # cannot be pickled: torch.save fails midway
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        checkpoint.save(broken, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_the_temporary_file_is_written_beside_its_target_and_renamed_there(tmp_path, monkeypatch):
    """A rename is atomic only within one file system: while torch.save writes, the partial file lies
    in the target's own folder (next to the previous checkpoint), and it is that file that becomes
    the target."""
    path = checkpoint.save(payload(), tmp_path / "ck.pt")
    real_save, real_replace = torch.save, os.replace
    during, renamed = [], []

    def watching_save(obj, f, *args, **kwargs):
        during.append(sorted(p.name for p in tmp_path.iterdir()))
        return real_save(obj, f, *args, **kwargs)

    def watching_replace(src, dst):
        renamed.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(torch, "save", watching_save)
    monkeypatch.setattr(os, "replace", watching_replace)
    checkpoint.save({**payload(), "step": 8}, path)
    assert len(during) == 1 and len(during[0]) == 2 and "ck.pt" in during[0], during
    (partial,) = set(during[0]) - {"ck.pt"}
    assert partial.startswith("."), partial  # hidden: a listing of the run folder does not show it
    assert renamed == [(tmp_path / partial, path)], renamed
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"] and checkpoint.load(path)["step"] == 8


def test_a_checkpoint_with_arbitrary_objects_is_refused(tmp_path, capsys):
    path = tmp_path / "foreign.pt"
    torch.save({**payload(), "extra": Foreign()}, path)
    with pytest.raises(
        checkpoint.CheckpointError, match="not a sashimi checkpoint: it holds objects the safe loader refuses"
    ):
        checkpoint.load(path)
    assert "code ran" not in capsys.readouterr().out


@pytest.mark.parametrize("content", [[1, 2], {"model": {}}, {"config": {}}])
def test_a_torch_file_that_is_not_a_sashimi_checkpoint_is_refused(tmp_path, content):
    torch.save(content, tmp_path / "other.pt")
    with pytest.raises(checkpoint.CheckpointError, match="not a sashimi checkpoint"):
        checkpoint.load(tmp_path / "other.pt")


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "nothing.pt")


def test_truncated_checkpoint(trained, tmp_path, capsys):
    broken = tmp_path / "truncated.pt"
    raw = (trained / "checkpoint.pt").read_bytes()
    broken.write_bytes(raw[: len(raw) // 2])
    code, err = run_main(
        generate_cmd, ["--checkpoint", str(broken), "--length", "10", "--out", str(tmp_path / "s")], capsys
    )
    assert_one_line_error(code, err, "truncated")
    code, err = run_main(evaluate_cmd, ["--checkpoint", str(broken), "--data", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "truncated")


def test_checkpoint_of_another_configuration(trained, tmp_path, capsys):
    payload = checkpoint.load(trained / "checkpoint.pt")
    payload["config"]["model"]["bits"] = 16  # weights are 8-bit
    other = checkpoint.save(payload, tmp_path / "other.pt")
    code, err = run_main(
        generate_cmd, ["--checkpoint", str(other), "--length", "10", "--out", str(tmp_path / "s")], capsys
    )
    assert_one_line_error(code, err, "do not fit", "16-bit")
    code, err = run_main(
        generate_cmd, ["--checkpoint", str(trained / "checkpoint.pt"), "--bits", "16", "--length", "10"], capsys
    )
    assert_one_line_error(code, err, "8-bit model", "--bits 16")


def test_a_failed_write_is_named_in_words(tmp_path, monkeypatch):
    """The system's reason when there is one; else torch's message without its C++ location, and the
    space left on the folder's disk, or nothing about space when even that cannot be read."""
    assert checkpoint.write_failure(OSError(28, "No space left on device"), tmp_path) == "No space left on device"
    torch_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0\nmore")
    said = checkpoint.write_failure(torch_error, tmp_path)
    assert said.startswith("the write stopped short (unexpected pos 64 vs 0); ") and said.endswith(" (full?)")

    def gone(folder):
        raise FileNotFoundError(folder)

    monkeypatch.setattr(checkpoint.shutil, "disk_usage", gone)
    assert checkpoint.write_failure(torch_error, tmp_path) == "the write stopped short (unexpected pos 64 vs 0)"

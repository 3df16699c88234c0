"""Training's data under faults: files that cannot be read leave no run folder and print one-line
notices, impossible sample rates are refused naming the file, a resume refuses a changed data
folder, and without --data only the main process writes the embedded dataset (the others wait)."""

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from sashimi import train as train_cmd
from sashimi.audio.dataset import folder_fingerprint
from sashimi.io import checkpoint
from sashimi.training import data, loop
from tests.helpers import assert_one_line_error, run_main, wav_with_rate, write

QUICK = [
    "--max-steps",
    "1",
    "--seq-len",
    "64",
    "--batch-size",
    "2",
    "--eval-batches",
    "1",
    "--sample-seconds",
    "0",
    "--device",
    "cpu",
]


def bad_folder(tmp_path, kind: str):
    folder = tmp_path / kind
    folder.mkdir()
    for i in range(3):
        path = folder / f"{kind}{i}.wav"
        if kind == "nan":
            write(path, np.full(100, np.nan, dtype=np.float32))
        elif kind == "inf":
            write(path, np.full(100, np.inf, dtype=np.float32))
        elif kind == "empty":
            write(path, np.zeros(0, dtype=np.float32))
        elif kind == "text":
            path.write_text("not audio at all")
        else:
            wav_with_rate(path, int(kind.split("-")[1]))
    return folder


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("nan", "non-finite samples"),
        ("inf", "non-finite samples"),
        ("empty", "holds no samples"),
        ("text", "cannot read audio file"),
        ("rate-2000000000", "its header says 2,000,000,000 Hz, outside 1,000-384,000 Hz"),
        ("rate-10", "its header says 10 Hz"),
    ],
)
def test_unreadable_files_leave_no_run_folder_and_notices_are_one_line(kind, reason, tmp_path, capsys):
    folder = bad_folder(tmp_path, kind)
    code, err = run_main(train_cmd, ["--data", str(folder), "--out", str(tmp_path / "runs"), *QUICK], capsys)
    assert_one_line_error(code, err, "could be read")
    notes = [line for line in err.splitlines() if line.startswith("notice:")]
    assert notes and all(line.startswith(f"notice: skipping {folder}/{kind}") and reason in line for line in notes), err
    assert len(err.splitlines()) == len(notes) + 1, err  # nothing else: no warning category, no source line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_run_refused_after_its_embedded_data_was_written_leaves_no_folder(tmp_path, capsys, monkeypatch):
    """Without --data the embedded dataset is written into the run before it is read; a refusal then
    removes the whole run folder, data included."""
    written = []

    def refuse(folder, *args, **kwargs):
        written.extend(Path(folder).rglob("*.wav"))
        raise ValueError("refused while loading")

    monkeypatch.setattr(data, "AudioDataset", refuse)
    code, err = run_main(train_cmd, ["--out", str(tmp_path / "runs"), *QUICK], capsys)
    assert_one_line_error(code, err, "refused while loading")
    assert written and list((tmp_path / "runs").iterdir()) == []


def test_a_refusal_after_the_folder_vanished_is_still_the_refusal(tmp_path, capsys, monkeypatch):
    """The cleanup of a refused run does not replace the refusal with its own error when something
    else removed the folder first."""

    def vanish_then_refuse(start, run_dir, procs):
        shutil.rmtree(run_dir)
        raise ValueError("refused while loading")

    monkeypatch.setattr(loop, "run_data", vanish_then_refuse)
    code, err = run_main(train_cmd, ["--out", str(tmp_path / "runs"), *QUICK], capsys)
    assert_one_line_error(code, err, "refused while loading")


def test_a_resume_refuses_a_changed_data_folder_unless_told(tmp_path, capsys):
    folder = tmp_path / "data"
    for i in range(10):
        write(folder / f"clip{i:02d}.wav", np.sin(np.arange(300) * (i + 1) / 50).astype(np.float32))
    run_dir = loop.train(train_cmd.parse_args(["--data", str(folder), "--out", str(tmp_path / "runs"), *QUICK]))
    saved = folder_fingerprint(folder)
    for i in range(10, 60):
        write(folder / f"clip{i:02d}.wav", np.zeros(300, dtype=np.float32))
    code, err = run_main(train_cmd, ["--resume", str(run_dir), "--max-steps", "2", "--sample-seconds", "0"], capsys)
    assert_one_line_error(
        code,
        err,
        f"the data folder {folder} changed since the checkpoint (10 files when checkpointed, 60 now)",
        "--allow-changed-data",
    )
    code, err = run_main(
        train_cmd,
        ["--resume", str(run_dir), "--max-steps", "2", "--sample-seconds", "0", "--allow-changed-data"],
        capsys,
    )
    assert code == 0, err
    assert (
        f"--allow-changed-data: continuing on the changed data folder {folder} (10 files when checkpointed, 60 now)"
        in err
    )
    assert checkpoint.load(run_dir / "checkpoint.pt")["data"] == folder_fingerprint(folder) != saved


def test_a_file_of_another_size_changes_the_fingerprint(tmp_path):
    write(tmp_path / "a.wav", np.zeros(100, dtype=np.float32))
    before = folder_fingerprint(tmp_path)
    write(tmp_path / "a.wav", np.zeros(101, dtype=np.float32))
    assert folder_fingerprint(tmp_path)["files"] == before["files"] == 1
    assert folder_fingerprint(tmp_path)["sha256"] != before["sha256"]


def test_only_the_main_process_writes_the_embedded_dataset_and_the_others_wait(tmp_path, monkeypatch):
    """Two processes (threads here) with a real barrier: rank 1 never writes, and lists the folder
    only after rank 0 has written all of it."""
    barrier = threading.Barrier(2, timeout=20)  # a rank that fails never arrives: the other stops waiting
    written, seen = [], {}
    real = data.write_synthetic_dataset

    def slow_write(folder):
        paths = real(folder, n_clips=6)
        written.append(folder)
        return paths

    monkeypatch.setattr(data, "write_synthetic_dataset", slow_write)
    monkeypatch.setattr(data.dist, "barrier", lambda: barrier.wait())
    config = train_cmd.parse_args(["--out", str(tmp_path)])

    def rank(r):
        data.write_embedded_data(config, tmp_path, loop.Processes(rank=r, world=2))
        seen[r] = sorted(p.name for p in (tmp_path / "data").iterdir())

    threads = [threading.Thread(target=rank, args=(r,)) for r in (1, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(written) == 1 and len(seen[0]) == 6 and seen[1] == seen[0]
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # the partial folder was renamed, not left


@pytest.mark.parametrize("change", ["resized", "renamed", "replaced"])
def test_a_resume_refuses_changed_files_of_the_same_count(change, tmp_path, capsys):
    """The fingerprint covers names and sizes, not only how many files there are: a file of another
    length, a renamed one, or one swapped for another of another name, each with 3 files before and
    after, are a changed folder."""
    folder = tmp_path / "data"
    for i in range(3):
        write(folder / f"clip{i}.wav", np.zeros(100 + i, dtype=np.float32))
    payload = {"data": folder_fingerprint(folder)}
    if change == "resized":
        write(folder / "clip1.wav", np.zeros(150, dtype=np.float32))
    elif change == "renamed":
        (folder / "clip1.wav").rename(folder / "clip7.wav")
    else:
        (folder / "clip2.wav").unlink()
        write(folder / "other.wav", np.zeros(102, dtype=np.float32))
    assert len(list(folder.iterdir())) == 3
    config = train_cmd.parse_args(["--data", str(folder)])
    with pytest.raises(ValueError, match=r"changed since the checkpoint \(3 files, changed names or sizes\)"):
        data.check_data_unchanged(config, payload, folder, loop.Processes())
    allowed = train_cmd.parse_args(["--data", str(folder), "--allow-changed-data"])
    data.check_data_unchanged(allowed, payload, folder, loop.Processes())
    assert "--allow-changed-data: continuing on the changed data folder" in capsys.readouterr().err


def test_a_resume_on_the_same_files_goes_on_silently(tmp_path, capsys):
    folder = tmp_path / "data"
    for i in range(3):
        write(folder / f"clip{i}.wav", np.zeros(100 + i, dtype=np.float32))
    payload = {"data": folder_fingerprint(folder)}
    write(folder / "clip1.wav", np.ones(101, dtype=np.float32))  # other samples, same name and size
    data.check_data_unchanged(train_cmd.parse_args(["--data", str(folder)]), payload, folder, loop.Processes())
    assert capsys.readouterr().err == ""

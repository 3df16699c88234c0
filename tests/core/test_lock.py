"""One writer per folder: a second writer is refused naming the first; a lock dies with its holder."""

import os
import signal
import stat
import subprocess
import sys

import pytest

from sashimi.core.lock import LOCK_NAME, FolderInUseError, exclusive

HOLD = """
import sys, time
from pathlib import Path
from sashimi.core.lock import exclusive
with exclusive(Path(sys.argv[1]), "training run"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_is_refused_until_the_first_is_killed(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        refusal = rf"{tmp_path} is in use by a training run, process {child.pid} on .*: one writer at a time"
        with pytest.raises(FolderInUseError, match=refusal):
            with exclusive(tmp_path, "generation"):
                pass
    finally:
        os.kill(child.pid, signal.SIGKILL)  # no cleanup runs: the lock file stays behind
        child.wait()
    assert (tmp_path / LOCK_NAME).is_file()
    with exclusive(tmp_path, "generation"):  # a dead holder's lock is no lock
        assert f"a generation, process {os.getpid()} on" in (tmp_path / LOCK_NAME).read_text()
    assert not (tmp_path / LOCK_NAME).exists()  # a finished writer leaves nothing behind


def test_the_lock_is_released_when_the_block_raises(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with exclusive(tmp_path, "generation"):
            raise KeyboardInterrupt
    with exclusive(tmp_path, "generation"):
        pass


def test_the_lock_file_has_an_ordinary_mode_while_held(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    with exclusive(tmp_path, "generation"):
        assert stat.S_IMODE(os.stat(tmp_path / LOCK_NAME).st_mode) == 0o644 & ~umask


def test_a_folder_that_cannot_hold_the_lock_is_named(tmp_path):
    with pytest.raises(OSError, match=rf"cannot write the lock file {tmp_path}/missing/{LOCK_NAME}: No such file"):
        with exclusive(tmp_path / "missing", "training run"):
            pass


def test_a_refused_writer_leaves_no_descriptor_open(tmp_path):
    """The refused writer's lock-file descriptor is closed, and so is a finished writer's: a
    long-lived process (a notebook) that asks many times does not run out of them."""
    start = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with exclusive(tmp_path, "generation"):
            pass
    assert len(os.listdir("/proc/self/fd")) == start
    with exclusive(tmp_path, "training run"):
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(3):
            with pytest.raises(FolderInUseError):
                with exclusive(tmp_path, "generation"):
                    pass
        assert len(os.listdir("/proc/self/fd")) == before


def test_a_lock_file_removed_between_open_and_lock_is_taken_again(tmp_path, monkeypatch):
    """The last holder removes the file after we opened it and before we locked it: we hold a lock
    on a file nobody else can see, so we open the new one and lock that."""
    real, calls = os.stat, []

    def stat_once_gone(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 1 and str(path).endswith(LOCK_NAME):
            raise FileNotFoundError(path)
        return real(path, *args, **kwargs)

    start = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "stat", stat_once_gone)
    with exclusive(tmp_path, "generation"):
        monkeypatch.setattr(os, "stat", real)
        assert (tmp_path / LOCK_NAME).is_file()
    assert len([c for c in calls if str(c).endswith(LOCK_NAME)]) == 2
    assert len(os.listdir("/proc/self/fd")) == start  # the descriptor of the file that went away, closed

"""One writer per folder: a second writer is refused naming the first; a lock dies with its holder."""

import os
import signal
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

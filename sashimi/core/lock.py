"""One writer per folder: an exclusive lock on FOLDER/.lock while a run trains into it or `generate`
writes samples into it; a second writer is refused with a message naming the first.

The lock is flock(2): the kernel drops it when its holder ends, however it ends (exit, Ctrl-C, kill
-9, a crash), so a lock is never stale: a .lock file left behind by a dead process locks nothing and
the next writer takes it over. The file's text only names the holder for the refusal."""

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".lock"


class FolderInUseError(ValueError):
    """Another process writes into the folder."""


def _take(path: Path, folder: Path, what: str) -> int:
    """The open, locked lock file; retried when the file was removed by its last holder between our
    open and our lock (we would hold a lock on a file nobody else can see)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OSError(f"cannot write the lock file {path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 4096, 0)  # mutate: skip any length past the holder's one line
            holder = text.decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise FolderInUseError(
                f"{folder} is in use by {holder}: one writer at a time; wait for it to end (or stop it), or "
                f"give the {what} another folder"
            ) from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def exclusive(folder: Path, what: str):
    """Hold `folder`'s lock for the block (the folder must exist); FolderInUseError naming the
    holder if another process holds it. `what`: the writer's kind, for the message. The lock file
    is removed on release, so a finished writer leaves nothing behind."""
    path = Path(folder) / LOCK_NAME
    fd = _take(path, Path(folder), what)
    try:
        me = f"a {what}, process {os.getpid()} on {socket.gethostname()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})"
        os.ftruncate(fd, 0)  # mutate: skip any length below the text written next
        os.pwrite(fd, me.encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked: a writer waiting on this file retries on a new one
        os.close(fd)  # closing the descriptor releases the lock

"""What every command shares: an argument parser whose errors are one `error:` line (exit 2), and
the device flag checked before any work."""

import argparse
import contextlib
import sys
import warnings

import torch


class Parser(argparse.ArgumentParser):
    """argparse, with a bad flag reported as one line `error: ...` (exit status 2) like every other
    expected failure of the commands, pointing at --help instead of printing the usage."""

    def error(self, message: str):
        print(f"error: {message} (see: {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def pick_device(name: str) -> torch.device:
    """auto (CUDA when available, else CPU), cpu, cuda or cuda:N; anything else, or CUDA where there
    is none, is a ValueError naming the flag."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N; got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N; got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: there are {torch.cuda.device_count()} CUDA devices")
    return device


@contextlib.contextmanager
def notices():
    """Warnings shown as one `notice: ...` line each on stderr (no source line, no category): what a
    command tells its user about files it changed or skipped, not a message to a programmer."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"notice: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield

"""Progress bars: tqdm, redrawn at most every few seconds when the stream is not a terminal.

Into a log file every redraw is kept, so a 16,000-step generation bar redrawn every 0.1 s (tqdm's
default) buries the log; on a terminal the bar overwrites itself and the default stays.
"""

import sys

from tqdm import tqdm

# seconds between redraws when the stream is a file or a pipe
LOG_INTERVAL = 5.0


def is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(**kwargs) -> tqdm:
    """tqdm(**kwargs) on `file` (stderr by default), redrawn at most every LOG_INTERVAL seconds
    unless that stream is a terminal (or the caller chose `mininterval`)."""
    kwargs.setdefault("file", sys.stderr)
    if not is_terminal(kwargs["file"]):
        kwargs.setdefault("mininterval", LOG_INTERVAL)
    return tqdm(**kwargs)

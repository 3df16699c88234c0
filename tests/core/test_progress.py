"""Progress bars into a file or pipe redraw every few seconds, not at every update; on a terminal,
as often as tqdm's default."""

import io

import pytest
import tqdm.std

from sashimi.core.progress import progress_bar
from tests.helpers import ROOT


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    """tqdm's clock, advanced by hand: 0.05 s per update below."""
    now = [1000.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: now[0])
    return now


def redraws(stream, clock, updates: int = 16000, seconds_per_update: float = 0.05) -> int:
    with progress_bar(total=updates, file=stream, unit="step") as bar:
        for _ in range(updates):
            clock[0] += seconds_per_update
            bar.update(1)
    return stream.getvalue().count("\r")


def test_a_bar_into_a_file_redraws_every_few_seconds(clock):
    # 16,000 updates over 800 s: one redraw every 5 s (the README's figure), give or take the first
    # and the closing one
    n = redraws(io.StringIO(), clock)
    assert 800 / 5 - 2 <= n <= 800 / 5 + 2, n


def test_a_bar_on_a_terminal_keeps_tqdm_s_interval(clock):
    assert redraws(Terminal(), clock) > 4000  # tqdm's 0.1 s: most of the 16,000 updates redraw


def test_the_caller_s_interval_wins(clock):
    with progress_bar(total=10, file=io.StringIO(), mininterval=0.5) as bar:
        assert bar.mininterval == 0.5


def test_every_bar_is_made_here():
    direct = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "sashimi").rglob("*.py")
        if "tqdm(" in p.read_text() and p.name != "progress.py"
    ]
    assert not direct, f"progress bars built with tqdm directly (use sashimi.core.progress.progress_bar): {direct}"

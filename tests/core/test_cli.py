"""The commands' shared command-line pieces: notices."""

import warnings

from sashimi.core import cli


def test_notices_show_as_one_line_even_where_warnings_are_ignored_or_raised(capsys):
    """A command's notices (files changed or skipped) reach its user as one line each, whatever
    filter the caller set (`-W ignore`, `-W error`), and a repeated notice shows once."""
    for outer in ("ignore", "error"):
        with warnings.catch_warnings():
            warnings.simplefilter(outer)
            with cli.notices():
                for _ in range(2):
                    warnings.warn("skipped a.wav: unreadable", stacklevel=1)
    assert capsys.readouterr().err == "notice: skipped a.wav: unreadable\n" * 2

"""Sample plots: written for any sample generation can give, without matplotlib's warnings."""

import warnings

import numpy as np

from sashimi.io.plots import plot_sample


def test_a_silent_or_short_sample_plots_without_warnings(tmp_path):
    """A silent sample's spectrogram takes the log of zero power, and 16 samples are fewer than a
    window: both would warn (RuntimeWarning, UserWarning); the plot is written all the same."""
    for name, audio in (("silent", np.zeros(4000)), ("short", np.random.default_rng(0).uniform(-1, 1, 16))):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            path = plot_sample(audio, 16000, tmp_path / f"{name}.png", name)
        assert path.is_file() and path.stat().st_size > 0


def test_a_title_too_tall_for_the_figure_plots_without_warnings(tmp_path):
    """A title taller than the figure leaves tight_layout nothing to place (it warns "Tight layout
    not applied"); the plot is still written, and the warning does not reach the user."""
    audio = np.random.default_rng(1).uniform(-1, 1, 4000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = plot_sample(audio, 16000, tmp_path / "tall.png", "\n".join(["line"] * 40))
    assert path.is_file() and path.stat().st_size > 0

"""The embedded synthetic corpus: deterministic, and read back by the dataset."""

import warnings

import numpy as np

from sashimi.audio import dataset as data
from sashimi.audio import synthetic


def test_synthetic_dataset_is_deterministic():
    a = synthetic.synthetic_dataset(n_clips=6, seconds=0.25, seed=3)
    b = synthetic.synthetic_dataset(n_clips=6, seconds=0.25, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(a[:3], synthetic.synthetic_dataset(3, 0.25, seed=3), strict=True))
    assert not np.array_equal(a[0], synthetic.synthetic_dataset(1, 0.25, seed=4)[0])
    for clip in a:
        assert clip.dtype == np.float32 and clip.shape == (4000,) and np.isfinite(clip).all()
        assert 0.3 - 1e-6 <= np.abs(clip).max() <= 0.9 + 1e-6
        assert clip.std() > 1e-3


def test_written_synthetic_files_are_read_back_by_the_dataset(tmp_path):
    clips = synthetic.synthetic_dataset(n_clips=12, seconds=0.125, seed=0)
    paths = synthetic.write_synthetic_dataset(tmp_path / "synth", n_clips=12, seconds=0.125, seed=0)
    assert data.list_audio_files(tmp_path) == sorted(paths)
    for clip, path in zip(clips, paths, strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loaded = data.load_audio(path, 16000)
        np.testing.assert_allclose(loaded, clip, atol=1 / 32768)
    split = data.split_of(paths[0])
    dataset = data.AudioDataset(tmp_path, split, 1000, 8, "mulaw")
    assert len(dataset) == 2 * len(dataset.files) and paths[0] in dataset.files


RATE = 16000


def dominant_lag(x: np.ndarray, low: int, high: int) -> int:
    """The lag in [low, high] with the largest autocorrelation of x (its period, for a periodic x)."""
    x = x - x.mean()
    spectrum = np.fft.rfft(x, 2 * len(x))
    corr = np.fft.irfft(np.abs(spectrum) ** 2)[: len(x)]
    return low + int(np.argmax(corr[low : high + 1]))


def test_the_default_corpus_is_many_short_clips_alternating_kinds(tmp_path):
    clips = synthetic.synthetic_dataset()
    assert len(clips) == synthetic.N_CLIPS >= 100  # enough that validation clips resemble training ones
    assert all(c.shape == (round(synthetic.SECONDS * RATE),) for c in clips)
    paths = synthetic.write_synthetic_dataset(tmp_path, n_clips=6, seconds=0.01)
    kinds = list(synthetic.SYNTHS)
    assert (
        [p.name for p in data.list_audio_files(tmp_path)]
        == [f"{i:03d}_{kinds[i % 3]}.wav" for i in range(6)]
        == [p.name for p in paths]
    )


def test_a_pluck_repeats_with_the_period_its_pitch_gives():
    for i in range(8):
        f0 = np.random.default_rng([5, i]).uniform(100.0, 400.0)  # the generator's first draw
        clip = synthetic.karplus_strong(np.random.default_rng([5, i]), 8000, RATE)
        # y[t] = (d/2)(y[t-P] + y[t-P-1]) repeats every P + 1/2 samples: the peak is at P or P + 1
        lag = dominant_lag(clip[2000:], RATE // 400 - 2, RATE // 100 + 2)
        assert lag in (round(RATE / f0), round(RATE / f0) + 1), (f0, lag)
        # decays, slowly: the fundamental loses at most (1 - 0.995) per period, ~1/5 of it over 8000 samples
        # at 400 Hz; the burst's high harmonics go faster, so the end keeps well over 5% of the start's peak
        assert 0.05 * np.abs(clip[:1000]).max() < np.abs(clip[-1000:]).max() < np.abs(clip[:1000]).max()


def test_a_chirp_stays_in_its_band():
    for i in range(8):
        clip = synthetic.chirp(np.random.default_rng([6, i]), 8000, RATE)
        power = np.abs(np.fft.rfft(clip)) ** 2
        freqs = np.fft.rfftfreq(len(clip), 1 / RATE)
        assert power[(freqs >= 80) & (freqs <= 1600)].sum() > 0.99 * power.sum()
        for part in (clip[1000:2000], clip[6000:7000]):  # the sweep's start and end, inside the envelope
            spectrum = np.abs(np.fft.rfft(part * np.hanning(len(part)), 8192))
            assert 90 <= np.fft.rfftfreq(8192, 1 / RATE)[np.argmax(spectrum)] <= 1510


def test_a_vowel_is_periodic_at_a_voice_pitch():
    for i in range(8):
        clip = synthetic.vowel(np.random.default_rng([7, i]), 8000, RATE)
        lag = dominant_lag(clip[3000:5000], RATE // 280, RATE // 80)
        assert 0.95 * RATE / 260 - 1 <= lag <= 1.05 * RATE / 90 + 1, lag

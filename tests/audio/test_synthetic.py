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

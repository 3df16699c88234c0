"""Generation from a trained checkpoint: WAVs of the requested length, prefix, seeds and top-p."""

import numpy as np
import pytest
import soundfile as sf
import torch

from sashimi import generate as generate_cmd
from sashimi.io import checkpoint
from sashimi.model import native
from sashimi.sampling import sample as sampling


def test_generate_writes_wavs_of_the_requested_length(trained, tmp_path, capsys):
    out = tmp_path / "samples"
    code = generate_cmd.main(
        [
            "--checkpoint",
            str(trained / "checkpoint.pt"),
            "--n-samples",
            "3",
            "--length",
            "300",
            "--batch-size",
            "2",
            "--out",
            str(out),
            "--top-p",
            "0.95",
        ]
    )
    assert code == 0
    wavs = sorted(out.glob("*.wav"))
    assert len(wavs) == 3 and len(list(out.glob("*.png"))) == 3
    for wav in wavs:
        audio, rate = sf.read(wav)
        assert rate == 16000 and audio.shape == (300,) and np.all(np.abs(audio) <= 1.0)
    scores = [float(w.stem.split("_loglik_")[1]) for w in wavs]
    assert scores == sorted(scores, reverse=True)  # sorted by log-likelihood, best first
    assert "samples/s" in capsys.readouterr().out


def test_generate_with_a_prefix(trained, tmp_path):
    prefix = tmp_path / "prefix.wav"
    sf.write(prefix, np.sin(np.arange(40) / 3.0).astype(np.float32), 16000)
    out = tmp_path / "primed"
    assert (
        generate_cmd.main(
            [
                "--checkpoint",
                str(trained / "checkpoint.pt"),
                "--n-samples",
                "1",
                "--length",
                "20",
                "--prefix",
                str(prefix),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    audio, _ = sf.read(next(out.glob("*.wav")))
    assert audio.shape == (60,)


def test_sampling_is_seeded_and_respects_top_p(trained):
    model, _ = checkpoint.load_model(trained / "checkpoint.pt")
    a, _ = sampling.sample(model, 2, 40, seed=3)
    b, _ = sampling.sample(model, 2, 40, seed=3)
    assert torch.equal(a, b)
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])  # probabilities 0.032, 0.087, 0.237, 0.644
    assert torch.isfinite(sampling.top_p_filter(logits, 0.5)).tolist() == [[False, False, False, True]]
    assert torch.isfinite(sampling.top_p_filter(logits, 0.7)).tolist() == [[False, False, True, True]]
    assert torch.isfinite(sampling.top_p_filter(logits, 1.0)).all()


def test_small_batches_sample_on_one_thread_and_restore_the_count(monkeypatch):
    """Step mode up to ONE_THREAD_MAX_BATCH sequences runs on one CPU thread (extra threads collapse when
    another process holds a core); larger batches keep the process's threads; the count is restored."""
    from tests.helpers import lm, tiny_config

    seen = []
    loop = sampling.sampling_loop
    monkeypatch.setattr(sampling, "sampling_loop", lambda *a: seen.append(torch.get_num_threads()) or loop(*a))
    model = lm(3, torch.float32, **tiny_config(8).to_dict())
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for n in (1, sampling.ONE_THREAD_MAX_BATCH, sampling.ONE_THREAD_MAX_BATCH + 1):
            sampling.sample(model, n, 3, compile=False)
        assert seen == [1, 1, 2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("flag, fused", [("on", True), ("off", False), ("auto", False)])
def test_generate_compile_flag_chooses_the_step(flag, fused, trained, tmp_path, monkeypatch):
    """--compile on goes through the fused step (compiled; here its eager twin, to stay fast), off and a
    short auto run through the modules' step."""
    from sashimi.model.fused import FusedStep

    built = []
    monkeypatch.setattr(sampling, "FusedStep", lambda *a, **k: built.append(k) or FusedStep(*a))
    code = generate_cmd.main(
        [
            "--checkpoint",
            str(trained / "checkpoint.pt"),
            "--n-samples",
            "1",
            "--length",
            "20",
            "--out",
            str(tmp_path),
            "--compile",
            flag,
        ]
    )
    assert code == 0 and built == ([{"compile": True}] if fused else [])


def test_repeated_sampling_reuses_the_recurrence_until_a_parameter_changes(monkeypatch):
    """sample() on unchanged weights builds no recurrence again; an in-place edit of one layer's
    parameter rebuilds that layer's, and only it, from the edited value."""
    from sashimi.model import s4
    from tests.helpers import lm, tiny_config

    built = []
    build = s4.linear_step_coefficients
    monkeypatch.setattr(s4, "linear_step_coefficients", lambda kernel: built.append(kernel) or build(kernel))
    model = lm(3, torch.float64, **tiny_config(8).to_dict())
    convs = [m for m in model.modules() if isinstance(m, s4.S4Conv)]
    first, _ = sampling.sample(model, 2, 30, seed=1, compile=False)
    assert len(built) == len(convs)
    again, _ = sampling.sample(model, 2, 30, seed=1, compile=False)
    assert len(built) == len(convs) and torch.equal(again, first)
    edited = convs[-1]
    before = edited._step
    with torch.no_grad():
        edited.kernel.inv_dt.add_(0.5)  # in place: the same tensor, a new version
    sampling.sample(model, 2, 30, seed=1, compile=False)
    assert built[len(convs) :] == [edited.kernel]
    rebuilt = build(edited.kernel)
    assert all(torch.equal(a, b) for a, b in zip(edited._step, rebuilt))
    assert not torch.equal(before[1], rebuilt[1])


def test_a_model_in_train_mode_samples_as_its_twin_without_dropout():
    """Sampling runs in eval mode: a model left in train mode with dropout 0.5 draws the same tokens and
    scores through the modules' step (where dropout would fire) as the same weights built with dropout 0."""
    from tests.helpers import lm, tiny_config

    config = tiny_config(8).to_dict()
    model = lm(3, torch.float32, **{**config, "dropout": 0.5}).train()
    twin = lm(3, torch.float32, **{**config, "dropout": 0.0}).eval()
    twin.load_state_dict(model.state_dict())
    want, want_loglik = sampling.sample(twin, 2, 40, seed=4, compile=False)
    got, loglik = sampling.sample(model, 2, 40, seed=4, compile=False)
    assert torch.equal(got, want) and torch.equal(loglik, want_loglik)
    assert model.training and not twin.training  # each model's own mode is given back (a run samples mid-run)


def test_a_model_with_one_module_in_train_mode_samples_without_dropout_and_keeps_its_modes():
    """The model in eval mode but one block's dropout (0.5) left in train mode: sampling still runs
    every module in eval mode (the draws of the twin without dropout), and afterwards each module
    has the mode it had, that block's dropout training and the rest not."""
    from tests.helpers import lm, tiny_config

    config = tiny_config(8).to_dict()
    model = lm(3, torch.float32, **{**config, "dropout": 0.5}).eval()
    twin = lm(3, torch.float32, **{**config, "dropout": 0.0}).eval()
    twin.load_state_dict(model.state_dict())
    dropout = next(m for m in model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0)
    dropout.train()
    modes = [m.training for m in model.modules()]
    want, want_loglik = sampling.sample(twin, 2, 40, seed=4, compile=False)
    got, loglik = sampling.sample(model, 2, 40, seed=4, compile=False)
    assert torch.equal(got, want) and torch.equal(loglik, want_loglik)
    assert [m.training for m in model.modules()] == modes and sum(modes) == 1


def test_the_progress_counts_one_step_per_sampled_position():
    """A prefix of 3 and 5 sampled positions: the bar advances by the 5 sampled (the prefix is not
    sampled): by one each on the modules' step, by the chunk (here all 5 at once) on the native one."""
    from tests.helpers import lm, tiny_config

    class Counter:
        def __init__(self):
            self.steps = []

        def update(self, n):
            self.steps.append(n)

    counter = Counter()
    model = lm(4, torch.float32, **tiny_config(8).to_dict())
    tokens, _ = sampling.sample(model, 2, 5, prefix=torch.tensor([128, 120, 130]), progress=counter, compile=False)
    assert counter.steps == [1] * 5 and tokens.shape == (2, 8)
    if native.available():
        counter.steps.clear()
        sampling.sample(model, 2, 5, prefix=torch.tensor([128, 120, 130]), progress=counter)
        assert counter.steps == [5]


@pytest.mark.skipif(not native.available(), reason=native.reason() or "native step available")
def test_the_native_step_is_given_the_process_threads_and_chooses_by_timing(monkeypatch):
    """Through the native step (`compile="auto"`), at any batch, NativeStep is built with the
    process's thread count and its `ThreadChoice` times 1 and that many (tests/sampling/
    test_native_draw.py holds the choice itself)."""
    from tests.helpers import lm, tiny_config

    seen, real = [], native.NativeStep
    monkeypatch.setattr(
        native, "NativeStep", lambda model, n, threads: seen.append((n, threads)) or real(model, n, threads)
    )
    choices, real_choice = [], sampling.ThreadChoice
    monkeypatch.setattr(sampling, "ThreadChoice", lambda step: choices.append(real_choice(step)) or choices[-1])
    model = lm(3, torch.float32, **tiny_config(8).to_dict())
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for n in (1, sampling.ONE_THREAD_MAX_BATCH + 1):
            sampling.sample(model, n, 3, compile="auto")
    finally:
        torch.set_num_threads(before)
    assert seen == [(1, 2), (sampling.ONE_THREAD_MAX_BATCH + 1, 2)]
    assert [c.choices for c in choices] == [[1, 2], [1, 2]]

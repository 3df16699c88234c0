"""`generate --stream`: one sample written while it is drawn, into a WAV valid at every moment or as
raw PCM on stdout, the same audio `generate` writes for that seed, Ctrl-C and a closed pipe leaving
what was drawn. The expected audio comes from soundfile (libsndfile) writing the same sample."""

import io
import os
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from sashimi import generate
from sashimi.audio.quantize import decode
from sashimi.io import checkpoint
from sashimi.sampling import stream, write
from sashimi.sampling.sample import sample
from tests.draws import interrupt_at_draw, on_each_draw
from tests.helpers import assert_one_line_error, lm, run_main, tiny_config

RATE = 8000


def checkpoint_of(tmp_path, bits=8, quantization="mulaw"):
    model = lm(3, torch.float32, **tiny_config(bits).to_dict())
    train = {"sample_rate": RATE, "quantization": quantization}
    return checkpoint.save(
        {"model": model.state_dict(), "config": {"model": model.config.to_dict(), "train": train}},
        tmp_path / "run" / "checkpoint.pt",
    )


@pytest.fixture
def ckpt(tmp_path):
    return checkpoint_of(tmp_path)


@pytest.fixture
def plots_touched(monkeypatch):
    monkeypatch.setattr(write, "plot_sample", lambda audio, rate, path, title: path.touch())


def soundfile_pcm(audio: np.ndarray) -> np.ndarray:
    """What libsndfile writes for float32 audio as PCM_16, read back as int16."""
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(audio, np.float32), RATE, subtype="PCM_16", format="WAV")
    buffer.seek(0)
    return sf.read(buffer, dtype="int16")[0]


def pcm_of(path) -> np.ndarray:
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
    return sf.read(path, dtype="int16")[0]


def generated_wav(ckpt, out, argv) -> np.ndarray:
    """The one WAV `generate` (not streaming) writes for these flags."""
    assert generate.main(["--checkpoint", str(ckpt), "--n-samples", "1", "--out", str(out), *argv]) == 0
    (path,) = out.glob("sample_*.wav")
    return pcm_of(path)


@pytest.mark.parametrize("bits, quantization", [(8, "mulaw"), (8, "linear"), (16, "mulaw"), (16, "linear")])
def test_pcm16_is_what_soundfile_writes_for_every_level_and_for_random_audio(bits, quantization):
    levels = decode(torch.arange(2**bits), bits, quantization).numpy()
    assert np.array_equal(stream.pcm16(levels), soundfile_pcm(levels))
    rng = np.random.default_rng(bits)
    # random values, values on and a quarter step off the 16-bit grid, and past both ends
    grid = rng.integers(-32768, 32768, 20000) / 32768 + rng.choice([0, 0.25, 0.5, 0.75], 20000) / 32768
    audio = np.concatenate([rng.uniform(-1, 1, 50000), grid, [1.0, -1.0, 1.5, -1.5, 0.0]]).astype(np.float32)
    assert np.array_equal(stream.pcm16(audio), soundfile_pcm(audio))


def test_the_wav_is_whole_after_every_write_and_a_stopped_write_is_overwritten(tmp_path):
    path, rng = tmp_path / "a.wav", np.random.default_rng(0)
    out = stream.PcmStream(str(path), RATE)
    assert path.read_bytes() == stream.wav_header(RATE, 0)  # a valid, empty WAV before the first sample
    written = []
    for n in (80, 1, 80, 33):
        chunk = rng.integers(-32768, 32768, n).astype("<i2")
        out.write(chunk)
        written.append(chunk)
        # read by another reader at once: data and header are on disk, not in a buffer
        assert np.array_equal(pcm_of(path), np.concatenate(written)) and out.frames == sum(map(len, written))
        out.file.seek(0, os.SEEK_END)  # where the next write would start
        out.file.write(b"\x01\x02\x03")  # what a write stopped midway (Ctrl-C) might leave past the data
        out.file.flush()
    with open(path, "r+b") as other:  # a header gone stale (a failed rewrite): close writes it as counted
        other.write(stream.wav_header(RATE, 1))
    out.close()
    assert path.stat().st_size == stream.HEADER_BYTES + 2 * out.frames  # the stopped write's bytes are gone
    assert np.array_equal(pcm_of(path), np.concatenate(written))


def test_an_existing_wav_is_replaced_only_when_asked_and_new_folders_are_made(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        stream.PcmStream(str(path), RATE)
    assert path.read_bytes() == b"keep"
    stream.PcmStream(str(path), RATE, overwrite=True).close()
    assert len(pcm_of(path)) == 0
    deep = tmp_path / "new" / "deeper" / "b.wav"
    stream.PcmStream(str(deep), RATE).close()
    assert len(pcm_of(deep)) == 0


def test_a_gone_reader_s_stdout_is_put_on_dev_null_without_a_leaked_descriptor(monkeypatch):
    read, write_end = os.pipe()
    monkeypatch.setattr(sys, "stdout", types.SimpleNamespace(fileno=lambda: write_end))
    before = len(os.listdir("/proc/self/fd"))
    stream.quiet_stdout()
    assert len(os.listdir("/proc/self/fd")) == before
    os.write(write_end, b"lost")  # now into /dev/null: the pipe has no writer left, and reads its end
    assert os.read(read, 4) == b""
    os.close(read)
    os.close(write_end)


def test_the_header_is_a_plain_pcm_wav_header():
    header = stream.wav_header(RATE, 5)
    assert len(header) == stream.HEADER_BYTES
    assert header[:4] == b"RIFF" and int.from_bytes(header[4:8], "little") == 36 + 10
    assert header[8:16] == b"WAVEfmt " and header[36:40] == b"data" and int.from_bytes(header[40:44], "little") == 10
    fields = np.frombuffer(header[20:36], "<u2")  # format, channels, rate (2), bytes/s (2), block, bits
    assert fields[[0, 1, 6, 7]].tolist() == [1, 1, 2, 16]
    assert int.from_bytes(header[24:28], "little") == RATE and int.from_bytes(header[28:32], "little") == 2 * RATE


def test_listen_hears_every_drawn_token_in_order():
    model = lm(3, torch.float32, **tiny_config(8).to_dict())
    heard = []
    tokens, _ = sample(model, 3, 20, seed=5, listen=heard.append, prefix=torch.tensor([1, 2]))
    assert all(t.shape == (3,) for t in heard)
    assert torch.equal(torch.stack(heard, 1), tokens[:, 2:])


@pytest.mark.parametrize("bits, quantization", [(8, "mulaw"), (16, "linear")])
def test_a_streamed_wav_is_the_wav_generate_writes_for_that_seed(bits, quantization, tmp_path, capsys, plots_touched):
    """Prefix included, at a length that is no whole number of chunks (80 samples at 8 kHz)."""
    ckpt = checkpoint_of(tmp_path, bits, quantization)
    prefix = tmp_path / "prefix.wav"
    sf.write(prefix, np.random.default_rng(1).uniform(-0.5, 0.5, 37), RATE)
    argv = ["--length", "203", "--seed", "7", "--temperature", "0.9", "--prefix", str(prefix)]
    expected = generated_wav(ckpt, tmp_path / "plain", argv)
    path = tmp_path / "streamed" / "s.wav"  # its folder is made
    code, err = run_main(generate, ["--checkpoint", str(ckpt), "--stream", str(path), *argv], capsys)
    assert code == 0, err
    assert len(expected) == 37 + 203 and np.array_equal(pcm_of(path), expected)
    assert f"streaming the 37-sample prefix, then 203 generated samples at {RATE} Hz to {path}" in err
    assert f"{path} (a WAV, valid as it grows), 80 samples a chunk" in err
    assert "first audio" in err and "then 80 samples in" in err and "streamed 203 samples in " in err
    assert not list((tmp_path / "streamed").glob("*.png"))


def test_stream_to_stdout_is_the_raw_pcm_and_every_message_is_on_stderr(ckpt, tmp_path, capsysbinary, plots_touched):
    argv = ["--length", "170", "--seed", "3"]
    expected = generated_wav(ckpt, tmp_path / "plain", argv)
    capsysbinary.readouterr()
    assert generate.main(["--checkpoint", str(ckpt), "--stream", "-", *argv]) == 0
    captured = capsysbinary.readouterr()
    assert np.array_equal(np.frombuffer(captured.out, "<i2"), expected)
    assert b"to stdout (raw 16-bit little-endian mono PCM)" in captured.err


def test_chunks_are_written_as_they_fill_and_the_first_is_timed(ckpt, tmp_path, monkeypatch):
    """Each write holds CHUNK_SECONDS of audio, while sampling is still under way (the steps drawn by
    then are one chunk more than the last write), and the rest at the end."""
    model, _ = checkpoint.load_model(ckpt, torch.device("cpu"))
    writes, draws, logged = [], [], []
    real_write = stream.PcmStream.write

    def spy_write(self, pcm):
        writes.append((len(pcm), len(draws)))
        real_write(self, pcm)

    monkeypatch.setattr(stream.PcmStream, "write", spy_write)
    on_each_draw(monkeypatch, lambda: draws.append(1))
    frames = stream.stream_to(model, "mulaw", RATE, str(tmp_path / "a.wav"), 250, log=logged.append)
    assert frames == 250 and writes == [(80, 80), (80, 160), (80, 240), (10, 250)]
    assert round(RATE * stream.CHUNK_SECONDS) == 80
    assert logged[-1].startswith("streamed 250 samples in ") and logged[-1].endswith("x real time)")


def test_the_first_audio_is_timed_from_the_given_start(ckpt, tmp_path, monkeypatch, capsys):
    model, _ = checkpoint.load_model(ckpt, torch.device("cpu"))
    clock = iter(range(100, 10**6))
    monkeypatch.setattr(stream, "time", types.SimpleNamespace(perf_counter=lambda: float(next(clock))))
    stream.stream_to(model, "mulaw", RATE, str(tmp_path / "a.wav"), 100, log=print, started=90.0)
    # the clock's readings: sampling's start (100), the first token's (101), the first chunk's (102), the end (103)
    captured = capsys.readouterr()
    err = captured.err + captured.out  # the first audio beside the bar (stderr), the rest by `log` (print)
    expected = "first audio 12.000 s after the start: 11.000 s of setup (checkpoint, recurrence, step), then 80 samples"
    assert expected + " in 1.000 s" in err
    assert "streamed 100 samples in 3.0 s, 50 samples/s once set up (0.01x real time)" in err  # 99 after the first
    stream.stream_to(model, "mulaw", RATE, str(tmp_path / "b.wav"), 30, log=print)
    # no start given: the call's (104), sampling's (105), the first token's (106); 30 samples, less than a
    # chunk: the first audio is the end's flush (107)
    assert "first audio 3.000 s after the start: 2.000 s of setup (checkpoint, recurrence, step), then 30 samples" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("at", [1, 81, 123])
def test_ctrl_c_leaves_a_valid_wav_of_every_sample_drawn(at, ckpt, tmp_path, capsys, monkeypatch, plots_touched):
    argv = ["--length", "200", "--seed", "2"]
    expected = generated_wav(ckpt, tmp_path / "plain", argv)
    interrupt_at_draw(at, monkeypatch)
    path = tmp_path / "s.wav"
    code, err = run_main(generate, ["--checkpoint", str(ckpt), "--stream", str(path), *argv], capsys)
    assert code == 130 and "Traceback" not in err
    assert np.array_equal(pcm_of(path), expected[: at - 1])
    assert f"interrupted: kept the {at - 1:,} samples streamed so far in {path}" in err


def test_a_reader_closing_the_pipe_ends_the_stream_quietly(ckpt, tmp_path):
    model, _ = checkpoint.load_model(ckpt, torch.device("cpu"))
    read, write_end = os.pipe()
    os.close(read)
    logged = []
    with os.fdopen(write_end, "wb", buffering=0) as pipe:
        frames = stream.stream_to(model, "mulaw", RATE, "-", 300, log=logged.append, stdout=pipe)
    assert frames == 0 and logged[-1] == "stopped: the reader of stdout closed it after 0 samples"


def test_a_full_disk_is_one_error_naming_the_file(ckpt, tmp_path, capsys, monkeypatch):
    def full(self, pcm):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(stream.PcmStream, "write", full)
    path = tmp_path / "s.wav"
    code, err = run_main(generate, ["--checkpoint", str(ckpt), "--stream", str(path), "--length", "100"], capsys)
    assert_one_line_error(code, err, f"cannot write {path} (a WAV, valid as it grows): No space left on device")


def test_a_wav_that_cannot_be_created_is_one_error_naming_it(ckpt, tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "s.wav"  # its folder would be a file
    code, err = run_main(generate, ["--checkpoint", str(ckpt), "--stream", str(path)], capsys)
    assert_one_line_error(code, err, f"cannot write {path} (a WAV, valid as it grows): ")

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(stream, "open", refused, raising=False)  # the module's `open`: the WAV's
    path = tmp_path / "s.wav"
    code, err = run_main(generate, ["--checkpoint", str(ckpt), "--stream", str(path), "--length", "9"], capsys)
    assert_one_line_error(code, err, f"cannot write {path} (a WAV, valid as it grows): Permission denied")


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--n-samples", "2"], ["--stream writes one sample; got --n-samples 2"]),
        (["--out", "folder"], ["--stream writes one file, --out a folder of samples"]),
        (["--stream", "x.mp3"], ["--stream takes a .wav path or - (raw PCM on stdout); got x.mp3"]),
    ],
)
def test_requests_stream_cannot_serve_are_one_error(argv, needles, ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["--checkpoint", str(ckpt), "--stream", "s.wav"]
    code, err = run_main(generate, [*base, *argv], capsys)
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "s.wav").exists() and not (tmp_path / "x.mp3").exists()


def test_an_existing_file_is_kept_unless_overwrite_and_a_folder_is_refused(ckpt, tmp_path, capsys):
    path = tmp_path / "s.wav"
    path.write_bytes(b"keep")
    code, err = run_main(generate, ["--checkpoint", str(ckpt), "--stream", str(path), "--length", "9"], capsys)
    assert_one_line_error(code, err, f"--stream {path} exists: give a new path, or --overwrite to replace it")
    assert path.read_bytes() == b"keep"
    argv = ["--checkpoint", str(ckpt), "--stream", str(path), "--length", "9", "--overwrite"]
    assert generate.main(argv) == 0 and len(pcm_of(path)) == 9
    (tmp_path / "d.wav").mkdir()
    code, err = run_main(generate, ["--checkpoint", str(ckpt), "--stream", str(tmp_path / "d.wav")], capsys)
    assert_one_line_error(code, err, "d.wav is a folder: give a .wav path")


def test_a_failed_request_leaves_no_folder_and_an_existing_file_is_never_truncated(ckpt, tmp_path, capsys):
    path = tmp_path / "new" / "deeper" / "s.wav"
    missing = ["--checkpoint", str(tmp_path / "missing.pt"), "--stream", str(path)]
    code, err = run_main(generate, missing, capsys)
    assert code == 2 and not (tmp_path / "new").exists()
    model, _ = checkpoint.load_model(ckpt)
    kept = tmp_path / "kept.wav"  # made after the command's check, before the stream opens
    kept.write_bytes(b"keep")
    with pytest.raises(OSError, match="cannot write .*kept.wav .*: File exists"):
        stream.stream_to(model, "mulaw", RATE, str(kept), 10, log=lambda line: None)
    assert kept.read_bytes() == b"keep"
    assert stream.stream_to(model, "mulaw", RATE, str(kept), 10, log=lambda line: None, overwrite=True) == 10


def test_a_full_disk_fails_the_write_before_it_is_counted(tmp_path):
    out = stream.PcmStream(str(tmp_path / "a.wav"), RATE)
    out.write(np.arange(5, dtype="<i2"))
    out.file.close()
    out.file = open("/dev/full", "wb")
    with pytest.raises(OSError, match="No space left"):
        out.write(np.arange(80, dtype="<i2"))
    assert out.frames == 5
    with pytest.raises(OSError, match="No space left"):
        out.close()
    assert out.file.closed


def test_ctrl_c_that_also_stops_the_player_keeps_what_was_sent(ckpt, monkeypatch):
    """Ctrl-C in a terminal reaches the whole pipeline: the player is gone when the last samples
    drawn are written. The run still stops as interrupted, with the samples the player took."""
    model, _ = checkpoint.load_model(ckpt)
    read, write_end = os.pipe()
    interrupt_at_draw(100, monkeypatch, also=lambda: os.close(read))
    logged = []
    with os.fdopen(write_end, "wb", buffering=0) as pipe:
        with pytest.raises(KeyboardInterrupt):
            stream.stream_to(model, "mulaw", RATE, "-", 300, log=logged.append, stdout=pipe)
    assert logged[-1] == "interrupted: kept the 80 samples streamed so far"  # the first chunk; 19 more were lost


def test_raw_audio_is_never_sent_to_a_terminal(ckpt, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, err = run_main(generate, ["--checkpoint", str(ckpt), "--stream", "-"], capsys)
    assert_one_line_error(code, err, "--stream - writes raw audio to stdout, which is a terminal")


def test_the_default_sample_count_is_four_and_one_when_streaming(ckpt, tmp_path, capsys, plots_touched):
    assert generate.main(["--checkpoint", str(ckpt), "--length", "5", "--out", str(tmp_path / "o")]) == 0
    assert len(list((tmp_path / "o").glob("sample_*.wav"))) == 4
    assert generate.main(["--checkpoint", str(ckpt), "--length", "5", "--stream", str(tmp_path / "s.wav")]) == 0
    assert len(pcm_of(tmp_path / "s.wav")) == 5

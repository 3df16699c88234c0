"""Every command's bad inputs: exit status 2, exactly one `error:` line naming what is wrong, no
traceback, and (for training) no run folder left behind. One table, so a new flag is one row."""

import numpy as np
import pytest
import torch

from sashimi import bench, evaluate, generate, interop, mutate, selfcheck, specs, train
from sashimi.harness import tolerances
from sashimi.io import checkpoint
from tests.helpers import PUBLISHED, write

TRAIN = [
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--lr", "-1"], "--lr must be a finite number in [0"),
    (["--ssm-lr", "nan"], "--ssm-lr"),
    (["--grad-clip", "nan"], "--grad-clip"),
    (["--grad-clip", "0"], "--grad-clip must be a finite number in (0"),
    (["--max-steps", "-1"], "--max-steps must be a finite number in [1"),
    (["--max-minutes", "nan"], "--max-minutes"),
    (["--eval-every", "0"], "--eval-every must be a finite number in [1"),
    (["--eval-batches", "0"], "--eval-batches"),
    (["--batch-size", "0"], "--batch-size"),
    (["--dropout", "1.5"], "--dropout must be a finite number in [0, 1)"),
    (["--sample-seconds", "-1"], "--sample-seconds"),
    (["--sample-rate", "0"], "--sample-rate"),
    (["--seed", "-3"], "--seed"),
    (["--seq-len", str(10**9)], "needs about"),
    (["--device", "banana"], "--device must be auto, cpu, cuda or cuda:N"),
    (["--bits", "12"], "--bits must be 8 or 16"),
    (["--max-steps", "abc"], "invalid int value"),
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--quantization", "alaw"], "--quantization must be mulaw or linear"),
]


def call(module, argv, capsys):
    try:
        code = module.main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    return code, capsys.readouterr().err


def assert_one_error_line(code, err, needle):
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize("argv,needle", TRAIN, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_train_refuses_before_any_work(argv, needle, tmp_path, capsys):
    code, err = call(
        train,
        [*argv, "--max-steps", "1", "--out", str(tmp_path / "runs")]
        if "--max-steps" not in argv
        else [*argv, "--out", str(tmp_path / "runs")],
        capsys,
    )
    assert_one_error_line(code, err, needle)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, trained):
    """A good checkpoint, one with NaN weights, and a truncated one."""
    folder = tmp_path_factory.mktemp("bad_checkpoints")
    payload = checkpoint.load(trained / "checkpoint.pt")
    payload["model"] = {
        k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in payload["model"].items()
    }
    checkpoint.save(payload, folder / "nan.pt")
    (folder / "cut.pt").write_bytes((trained / "checkpoint.pt").read_bytes()[:1000])
    return {
        "good": str(trained / "checkpoint.pt"),
        "nan": str(folder / "nan.pt"),
        "cut": str(folder / "cut.pt"),
        "missing": str(folder / "nope.pt"),
    }


GENERATE = [
    (["--temperature", "nan"], "good", "--temperature must be a finite number in (0"),
    (["--temperature", "0"], "good", "--temperature"),
    (["--top-p", "0"], "good", "--top-p must be a finite number in (0, 1]"),
    (["--top-p", "1.5"], "good", "--top-p"),
    (["--seconds", "0"], "good", "--seconds must be a finite number in (0"),
    (["--seconds", "nan"], "good", "--seconds"),
    (["--length", "0"], "good", "--length"),
    (["--n-samples", "0"], "good", "--n-samples"),
    (["--batch-size", "0"], "good", "--batch-size"),
    (["--device", "banana"], "good", "--device must be"),
    (["--bits", "16"], "good", "8-bit model; --bits 16"),
    ([], "nan", "non-finite weights"),
    ([], "cut", "cannot read checkpoint"),
    ([], "missing", "checkpoint not found"),
    (["--prefix", "/nonexistent.wav"], "good", "audio file /nonexistent.wav does not exist"),
    (["--prefix", "/"], "good", "/ is not a file"),
]


@pytest.mark.parametrize("argv,which,needle", GENERATE, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_generate_refuses(argv, which, needle, checkpoints, tmp_path, capsys):
    length = [] if {"--seconds", "--length"} & set(argv) else ["--length", "16"]
    code, err = call(generate, ["--checkpoint", checkpoints[which], *length, "--out", str(tmp_path), *argv], capsys)
    assert_one_error_line(code, err, needle)


def test_evaluate_refuses(checkpoints, audio_folder, tmp_path, capsys):
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "a.wav").write_bytes(b"RIFF junk")
    cases = [
        (["--checkpoint", checkpoints["good"], "--data", str(tmp_path / "none")], "does not exist"),
        (["--checkpoint", checkpoints["good"], "--data", str(unreadable)], "none of the 1 audio files"),
        (["--checkpoint", checkpoints["good"], "--data", str(audio_folder), "--batch-size", "0"], "--batch-size"),
        (["--checkpoint", checkpoints["good"], "--data", str(audio_folder), "--device", "banana"], "--device"),
        (["--checkpoint", checkpoints["nan"], "--data", str(audio_folder)], "non-finite weights"),
    ]
    for argv, needle in cases:
        code, err = call(evaluate, argv, capsys)
        assert_one_error_line(code, err, needle)
        assert ("notice: skipping" in err) == ("unreadable" in argv[-1]), err


def test_interop_refuses(tmp_path, capsys):
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    cut = tmp_path / "cut.npz"
    cut.write_bytes((PUBLISHED / "pipeline_v4.npz").read_bytes()[:5000])
    cases = [
        (["check", str(cut)], "cannot read"),
        (["check", str(text)], "cannot read"),
        (["check", str(tmp_path / "none.npz")], "not found"),
        (["import", str(text), "--out", str(tmp_path / "m.pt")], "cannot read"),
        (
            [
                "import",
                str(PUBLISHED / "pipeline_v3.0.0.npz"),
                "--dt-transform",
                "softplus",
                "--out",
                str(tmp_path / "m.pt"),
            ],
            "log_dt",
        ),
        (
            ["import", str(PUBLISHED / "pipeline_v3.0.0.npz"), "--bits", "16", "--out", str(tmp_path / "m.pt")],
            "8-bit model",
        ),
        (["check"], "the following arguments are required"),
        (
            ["import", str(PUBLISHED / "pipeline_v4.npz"), "--sample-rate", "-5", "--out", str(tmp_path / "m.pt")],
            "--sample-rate must be a finite number in [1",
        ),
    ]
    listed, broken = tmp_path / "list.json", tmp_path / "broken.json"
    listed.write_text("[64, 8]")
    binary = tmp_path / "weights.json"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    broken.write_text('{"d_model": 64,')
    sidecar = tmp_path / "fixture.npz"
    sidecar.write_bytes((PUBLISHED / "pipeline_v4.npz").read_bytes())
    sidecar.with_suffix(".json").write_text("{dt_transform: softplus}")
    v4, m = str(PUBLISHED / "pipeline_v4.npz"), str(tmp_path / "m.pt")
    cases += [
        (
            ["import", v4, "--config", str(listed), "--out", m],
            f"--config {listed} holds a JSON list; expected an object",
        ),
        (["import", v4, "--config", str(broken), "--out", m], f"--config {broken} is not valid JSON: Expecting"),
        (["import", str(sidecar), "--out", m], f"the sidecar {sidecar.with_suffix('.json')} is not valid JSON"),
        (["import", v4, "--config", str(binary), "--out", m], f"--config {binary} is not a text file"),
    ]
    for argv, needle in cases:
        code, err = call(interop, argv, capsys)
        assert_one_error_line(code, err, needle)
    assert not (tmp_path / "m.pt").exists()


def test_small_commands_refuse(capsys):
    cases = [
        (selfcheck, ["--channels", "0"], "--channels"),
        (selfcheck, ["--length", "-5"], "--length"),
        (selfcheck, ["--channels", "abc"], "invalid int value"),
        (specs, ["--bits", "12"], "invalid choice"),
        (bench, ["--length", "7"], "multiple of prod(pool)"),
        (bench, ["--repeats", "0"], "--repeats must be at least 1"),
        (bench, ["--cases", "nope"], "unknown case"),
        (mutate, ["--timeout", "0"], "--timeout must be at least 1"),
        (tolerances, ["--measure", "--seed", "-1"], "--seed must be a non-negative integer; got -1"),
        (
            tolerances,
            ["--measure", "--cases", "0"],
            "--cases must be at least 20 (the 90th percentile that sets each band needs them); got 0",
        ),
    ]
    for module, argv, needle in cases:
        code, err = call(module, argv, capsys)
        assert_one_error_line(code, err, needle)


def test_silent_prefix_stays_silent(tmp_path):
    """A silent --prefix encodes to the zero level, not to full-scale DC."""
    from sashimi.audio.dataset import load_audio
    from sashimi.audio.quantize import encode, zero_level

    path = write(tmp_path / "silence.wav", np.zeros(400, dtype=np.float32))
    tokens = encode(torch.from_numpy(load_audio(path, 16000)), 8, "mulaw")
    assert torch.equal(tokens, torch.full_like(tokens, zero_level(8)))

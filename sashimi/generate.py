"""python -m sashimi.generate: sample audio from a trained checkpoint, one sample at a time in step mode.

The recurrence is set up once (never recomputing the convolution per sample); an optional
prefix WAV primes the state; samples are sorted by log-likelihood (best first) and written as
WAV with the checkpoint's quantization decoded, each with a waveform + spectrogram PNG.
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from sashimi import checkpoint, data, quantize
from sashimi.model import ModelConfig, SashimiLM
from sashimi.shapes import Float, Int, Tensor

SAMPLE_RATE = 16000


def load_model(path: str | Path, device: torch.device | str = "cpu", expect_bits: int | None = None) -> tuple[SashimiLM, dict]:
    """The model of a checkpoint, strictly: its weights must fit its own configuration."""
    payload = checkpoint.load(path, map_location=device)
    try:
        config = ModelConfig(**payload["config"]["model"])
    except (TypeError, KeyError) as e:
        raise checkpoint.CheckpointError(f"{path}: its configuration is not a model configuration ({e})") from None
    if expect_bits is not None and config.bits != expect_bits:
        raise checkpoint.CheckpointError(f"{path} is a {config.bits}-bit model; --bits {expect_bits} was asked for")
    model = SashimiLM(config).to(device)
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as e:
        detail = " ".join(line.strip() for line in str(e).splitlines()[1:4])
        raise checkpoint.CheckpointError(f"{path}: weights do not fit its configuration ({config.bits}-bit, d_model {config.d_model}, "
                                         f"n_layers {config.n_layers}): {detail}") from None
    return model.eval(), payload


def top_p_filter(logits: Float[Tensor, "B C"], top_p: float) -> Float[Tensor, "B C"]:
    """Keep the smallest set of classes whose probability reaches top_p (nucleus sampling)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    drop = cumulative - sorted_logits.softmax(-1) >= top_p  # classes entirely beyond the nucleus
    sorted_logits = sorted_logits.masked_fill(drop, -math.inf)
    return torch.full_like(logits, -math.inf).scatter(-1, order, sorted_logits)


@torch.inference_mode()
def sample(
    model: SashimiLM,
    n: int,
    length: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    prefix: Int[Tensor, " P"] | None = None,
    seed: int = 0,
    progress=None,
) -> tuple[Int[Tensor, "B T"], Float[Tensor, " B"]]:
    """n sequences: the prefix (if any) then `length` sampled tokens; and the mean log-likelihood
    per generated sample under the (tempered, filtered) sampling distribution."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive; got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1]; got {top_p}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    device = next(model.parameters()).device
    model.eval()
    model.setup_step()
    state = model.default_state(n)
    token = torch.full((n,), 2 ** (model.config.bits - 1), dtype=torch.long, device=device)
    prefix = prefix if prefix is not None else torch.zeros(0, dtype=torch.long)
    for t in range(prefix.shape[0]):
        _, state = model.step(token, state)
        token = prefix[t].expand(n).to(device)
    out, loglik = [], torch.zeros(n, dtype=torch.float64)
    for _ in range(length):
        logits, state = model.step(token, state)
        logp = top_p_filter(logits.float() / temperature, top_p).log_softmax(-1).cpu()
        token_cpu = torch.multinomial(logp.exp(), 1, generator=generator)[:, 0]
        loglik += logp.gather(1, token_cpu[:, None])[:, 0].double()
        token = token_cpu.to(device)
        out.append(token_cpu)
        if progress is not None:
            progress.update(1)
    generated = torch.stack(out, 1) if out else torch.zeros(n, 0, dtype=torch.long)
    return torch.cat([prefix.expand(n, -1).cpu(), generated], 1), loglik / max(length, 1)


def plot_sample(audio: np.ndarray, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 5))
    a.plot(np.arange(len(audio)) / SAMPLE_RATE, audio, linewidth=0.5)
    a.set_xlabel("time (s)")
    a.set_ylabel("amplitude")
    a.set_title(title)
    nfft = int(min(512, 2 ** max(4, int(math.log2(max(len(audio), 16))) - 1)))
    b.specgram(audio, NFFT=nfft, Fs=SAMPLE_RATE, noverlap=3 * nfft // 4, cmap="magma")
    b.set_xlabel("time (s)")
    b.set_ylabel("frequency (Hz)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def generate_to_folder(
    model: SashimiLM, bits: int, quantization: str, out: Path, n_samples: int = 1, length: int = SAMPLE_RATE, temperature: float = 1.0,
    top_p: float = 1.0, prefix: Int[Tensor, " P"] | None = None, batch_size: int = 16, seed: int = 0, log=print,
) -> list[Path]:
    """Sample, sort by log-likelihood, decode, write WAV + PNG per sample; returns the WAV paths."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokens, scores = [], []
    start = time.perf_counter()
    with tqdm(total=math.ceil(n_samples / batch_size) * length, unit="step", desc="generating", file=sys.stderr, leave=False) as bar:
        for first in range(0, n_samples, batch_size):
            n = min(batch_size, n_samples - first)
            t, s = sample(model, n, length, temperature, top_p, prefix, seed + first, progress=bar)
            tokens.append(t)
            scores.append(s)
    elapsed = time.perf_counter() - start
    tokens, scores = torch.cat(tokens), torch.cat(scores)
    log(f"generated {n_samples} x {length} samples in {elapsed:.1f} s: {n_samples * length / elapsed:,.0f} samples/s")
    written = []
    for rank, i in enumerate(scores.argsort(descending=True).tolist()):
        audio = quantize.decode(tokens[i], bits, quantization).numpy().astype(np.float32)
        path = out / f"sample_{rank:02d}_loglik_{scores[i]:.3f}.wav"
        sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
        plot_sample(audio, path.with_suffix(".png"), f"{path.name}: mean log-likelihood {scores[i]:.3f} nats")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sashimi.generate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by sashimi.train (or sashimi.interop import)")
    parser.add_argument("--n-samples", type=int, default=4)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=float, help="seconds to generate at 16 kHz (default 1)")
    length.add_argument("--length", type=int, help="samples to generate")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
    parser.add_argument("--prefix", help="a WAV whose samples prime the model before generation")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bits", type=int, choices=(8, 16), help="refuse a checkpoint of other bits")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="folder for the WAVs and PNGs (default: samples/ beside the checkpoint)")
    args = parser.parse_args(argv)
    try:
        if args.n_samples < 1 or args.batch_size < 1:
            raise ValueError("--n-samples and --batch-size must be at least 1")
        n_steps = args.length if args.length is not None else int(round((args.seconds or 1.0) * SAMPLE_RATE))
        if n_steps < 1:
            raise ValueError(f"the length to generate must be at least 1 sample; got {n_steps}")
        model, payload = load_model(args.checkpoint, args.device, args.bits)
        train = payload["config"].get("train", {})
        bits, quantization = model.config.bits, train.get("quantization") or "mulaw"
        prefix = None
        if args.prefix:
            audio = data.load_audio(args.prefix, SAMPLE_RATE)
            prefix = quantize.encode(torch.from_numpy(audio), bits, quantization)
        out = Path(args.out) if args.out else Path(args.checkpoint).parent / "samples"
        written = generate_to_folder(model, bits, quantization, out, args.n_samples, n_steps, args.temperature, args.top_p, prefix,
                                     args.batch_size, args.seed, log=lambda m: print(m))
        for path in written:
            print(path)
        return 0
    except (ValueError, checkpoint.CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

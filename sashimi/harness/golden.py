"""Golden outputs: seeded float64 outputs of tiny 8-bit and 16-bit models and of the data path,
stored in tests/golden/golden.npz. A golden row says "changed", not "wrong": every behaviour it
covers also has a test by independent computation; `--update-golden` makes an intended change a
visible diff.
"""

import math
import os
from pathlib import Path

import numpy as np
import torch

from sashimi.audio.dataset import IGNORE_INDEX, clip_pair
from sashimi.audio.quantize import decode, encode
from sashimi.audio.synthetic import synthetic_dataset
from sashimi.core.config import TrainConfig
from sashimi.harness.helpers import tiny_config
from sashimi.harness.verdict import Verdict, tolerance_bound
from sashimi.model.lm import SashimiLM
from sashimi.model.rollout import rollout
from sashimi.training.metrics import METRIC_NAMES, LossModel, MetricSums
from sashimi.training.optimizer import make_optimizer, optimization_step

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "golden.npz"
SEED = 1234


def synthetic_tokens(bits: int, method: str, n: int) -> torch.Tensor:
    audio = synthetic_dataset(n_clips=3, seconds=0.25, seed=SEED)
    signal = np.concatenate(audio)[:n]
    return encode(torch.from_numpy(signal), bits, method)


def model_outputs(bits: int) -> dict[str, np.ndarray]:
    """Seeded float64 outputs of a tiny model: logits both ways, every kernel, and training losses."""
    torch.manual_seed(SEED)
    model = SashimiLM(tiny_config(bits)).double()
    tokens = synthetic_tokens(bits, "mulaw", 4 * 64).reshape(4, 64)
    pairs = [clip_pair(t, 64, 2 ** (bits - 1)) for t in tokens]
    x, y = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    y[3, 50:] = IGNORE_INDEX  # a padded tail, as in a file's last clip
    out = {}
    with torch.no_grad():
        out["logits_conv"] = model(x[:2]).numpy()
    out["logits_step"] = rollout(model, x[:2]).numpy()
    if bits > 8:
        # 65536 classes: keep the file small; a fixed subset of classes plus the log-normalizer
        # of every position still moves with any change of the logits
        keep = np.random.default_rng(SEED).choice(2**bits, 256, replace=False)
        for key in ("logits_conv", "logits_step"):
            full = torch.from_numpy(out[key])
            out[key] = np.concatenate([full[..., keep].numpy(), full.logsumexp(-1, keepdim=True).numpy()], -1)
    for name, module in model.named_modules():
        if name.endswith("layer.kernel"):
            with torch.no_grad():
                out[f"kernel.{name}"] = module(int(module.l_kernel)).numpy()
    head = model.decoder.output_transform
    sums = MetricSums(bits)
    with torch.no_grad():
        sums.add(model.features(x), head.weight, head.bias, y)
    result = sums.result()
    out["metrics"] = np.array([result[k] for k in METRIC_NAMES])
    optimizer, _ = make_optimizer(model, lr=0.004)
    loss_model = LossModel(model)
    out["train_losses"] = np.array(
        [optimization_step(loss_model, model, optimizer, x, y, TrainConfig().grad_clip) for _ in range(3)]
    )
    return {f"model{bits}/{k}": v for k, v in out.items()}


def data_outputs() -> dict[str, np.ndarray]:
    out = {}
    for bits in (8, 16):
        for method in ("mulaw", "linear"):
            tokens = synthetic_tokens(bits, method, 3000)
            out[f"quantize/{method}{bits}/tokens"] = tokens.numpy()
            out[f"quantize/{method}{bits}/decoded"] = decode(tokens, bits, method).double().numpy()
    x, y = clip_pair(torch.arange(5, 15), 16, 128)
    out["data/clip_x"], out["data/clip_y"] = x.numpy(), y.numpy()
    return out


GOLDEN_PARTS = {"model8": lambda: model_outputs(8), "model16": lambda: model_outputs(16), "data": data_outputs}


def golden_outputs(errors: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Every golden output. With `errors`, a part that raises is recorded there (part -> message)
    and left out, so that the report can name it instead of stopping."""
    out = {}
    for part, compute in GOLDEN_PARTS.items():
        if errors is None:
            out.update(compute())
            continue
        try:
            out.update(compute())
        except Exception as e:  # a broken model must show up as a failed check, not a crash
            errors[part] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return out


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def part_of(key: str) -> str:
    """The GOLDEN_PARTS entry that produces a golden key."""
    head = key.split("/")[0]
    return head if head in ("model8", "model16") else "data"


def golden_rows(
    measured: dict[str, np.ndarray], golden: dict[str, np.ndarray], errors: dict[str, str] | None = None
) -> list[Verdict]:
    errors = errors or {}
    rows = [
        Verdict("golden", f"{part} outputs", message, "computed without error", False)
        for part, message in errors.items()
    ]
    for key in sorted(set(measured) | set(golden)):
        if part_of(key) in errors:
            continue
        if key not in golden:
            rows.append(Verdict("golden", key, "present", "absent from golden file (run --update-golden)", False))
            continue
        if key not in measured:
            rows.append(Verdict("golden", key, "absent", "present in golden file", False))
            continue
        a, b = measured[key], golden[key]
        exact = not np.issubdtype(b.dtype, np.floating)
        bound = 0.0 if exact else tolerance_bound("golden_float64", b)
        d = max_diff(a, b)
        rows.append(
            Verdict(
                "golden",
                key,
                f"max diff {d:.2e}" if a.shape == b.shape else f"shape {a.shape}",
                f"<= {bound:.1e}" + (" (exact)" if exact else ""),
                d <= bound,
            )
        )
    return rows


def update_golden(measured: dict[str, np.ndarray]) -> None:
    old = dict(np.load(GOLDEN)) if GOLDEN.is_file() else {}
    for key in sorted(set(measured) | set(old)):
        if key not in old:
            print(f"  added    {key} {measured[key].shape}")
        elif key not in measured:
            print(f"  removed  {key}")
        else:
            d = max_diff(measured[key], old[key])
            print(f"  {'changed' if d > 0 else 'same   '}  {key}: max diff {d:.3e}")
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    tmp = GOLDEN.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **measured)
    os.replace(tmp, GOLDEN)
    print(f"wrote {GOLDEN}")


def read() -> dict[str, np.ndarray]:
    """The committed golden outputs."""
    return dict(np.load(GOLDEN))

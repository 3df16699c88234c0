"""python -m sashimi.check: the pre-merge regression gate.

Checks, in under two minutes on a CPU:
  specs      exact parameter counts and per-stage shapes against specs/
  golden     seeded float64 outputs of tiny 8-bit and 16-bit models (convolution logits, step
             logits, kernels, losses of a few training steps) and of the data path
             (quantization, clipping, metrics) against tests/golden/golden.npz
  reference  the fast model against the float64 reference on a small random set
  published  the published-weights fixture, when present (--fixtures or SASHIMI_FIXTURES)
Prints each check with measured vs expected and pass/fail; exit status 1 on any failure.
--update-golden rewrites the golden file and prints what changed, so that an intended
change becomes a visible, reviewed diff.
"""

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sashimi import data, metrics, quantize, spec, specs
from sashimi.model import ModelConfig, SashimiLM
from sashimi.train import LossModel, TrainConfig, make_optimizer, optimization_step

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "golden.npz"
SEED = 1234


@dataclass
class Row:
    group: str
    name: str
    measured: str
    expected: str
    passed: bool | None  # None: skipped

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def tiny_config(bits: int) -> ModelConfig:
    return ModelConfig(bits=bits, d_model=8, n_layers=1, pool=[2, 2], expand=2, ff=2, n_ssm=1, d_state=8)


def synthetic_tokens(bits: int, method: str, n: int) -> torch.Tensor:
    audio = data.synthetic_dataset(n_clips=3, seconds=0.25, seed=SEED)
    signal = np.concatenate(audio)[:n]
    return quantize.encode(torch.from_numpy(signal), bits, method)


def model_outputs(bits: int) -> dict[str, np.ndarray]:
    """Seeded float64 outputs of a tiny model: logits both ways, every kernel, and training losses."""
    torch.manual_seed(SEED)
    model = SashimiLM(tiny_config(bits)).double()
    tokens = synthetic_tokens(bits, "mulaw", 4 * 64).reshape(4, 64)
    pairs = [data.clip_pair(t, 64, 2 ** (bits - 1)) for t in tokens]
    x, y = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    y[3, 50:] = data.IGNORE_INDEX  # a padded tail, as in a file's last clip
    out = {}
    with torch.no_grad():
        out["logits_conv"] = model(x[:2]).numpy()
        model.setup_step()
        state, steps = model.default_state(2), []
        for t in range(x.shape[1]):
            logits, state = model.step(x[:2, t], state)
            steps.append(logits)
        out["logits_step"] = torch.stack(steps, 1).numpy()
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
    sums = metrics.MetricSums(bits)
    with torch.no_grad():
        sums.add(model.features(x), head.weight, head.bias, y)
    result = sums.result()
    out["metrics"] = np.array([result[k] for k in ("loss", "bits_per_sample", "bpb", "accuracy", "accuracy@3", "accuracy@5", "accuracy@10", "perplexity")])
    config = TrainConfig(preset="tiny", bits=bits, lr=0.004, max_steps=3)
    optimizer, _ = make_optimizer(model, config)
    loss_model = LossModel(model)
    out["train_losses"] = np.array([optimization_step(loss_model, model, optimizer, x, y, config.grad_clip) for _ in range(3)])
    return {f"model{bits}/{k}": v for k, v in out.items()}


def data_outputs() -> dict[str, np.ndarray]:
    out = {}
    for bits in (8, 16):
        for method in ("mulaw", "linear"):
            tokens = synthetic_tokens(bits, method, 3000)
            out[f"quantize/{method}{bits}/tokens"] = tokens.numpy()
            out[f"quantize/{method}{bits}/decoded"] = quantize.decode(tokens, bits, method).double().numpy()
    x, y = data.clip_pair(torch.arange(5, 15), 16, 128)
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


def golden_rows(measured: dict[str, np.ndarray], golden: dict[str, np.ndarray], errors: dict[str, str] | None = None) -> list[Row]:
    tol = spec.load("tolerances")["golden_float64"]
    errors = errors or {}
    rows = [Row("golden", f"{part} outputs", message, "computed without error", False) for part, message in errors.items()]
    for key in sorted(set(measured) | set(golden)):
        if part_of(key) in errors:
            continue
        if key not in golden:
            rows.append(Row("golden", key, "present", "absent from golden file (run --update-golden)", False))
            continue
        if key not in measured:
            rows.append(Row("golden", key, "absent", "present in golden file", False))
            continue
        a, b = measured[key], golden[key]
        exact = not np.issubdtype(b.dtype, np.floating)
        bound = 0.0 if exact else tol["atol"] + tol["rtol"] * float(np.max(np.abs(b))) if b.size else 0.0
        d = max_diff(a, b)
        rows.append(Row("golden", key, f"max diff {d:.2e}" if a.shape == b.shape else f"shape {a.shape}", f"<= {bound:.1e}" + (" (exact)" if exact else ""), d <= bound))
    return rows


def spec_rows() -> list[Row]:
    rows = []
    for line in specs.param_lines():
        if line.enforced:
            rows.append(Row("specs", line.name, str(line.measured), str(line.documented), line.holds))
    for bits in (8, 16):
        model = SashimiLM(specs.model_config("tiny", bits))
        for line in specs.shape_lines(model)[0]:
            rows.append(Row("specs", f"{bits}-bit tiny: {line.name}", specs.fmt_shape(line.measured), line.documented, line.holds))
    return rows


def reference_rows(n: int = 3) -> list[Row]:
    """The fast model against the float64 reference on random small configurations."""
    from reference import layer as ref_layer
    from reference import sashimi as ref_model

    rows = []
    rng = np.random.default_rng(SEED)
    for i in range(n):
        config = ModelConfig(bits=8, d_model=int(rng.choice([2, 4])), n_layers=1, pool=[int(rng.choice([2, 4])), 2], expand=2,
                             ff=int(rng.choice([0, 2])), n_ssm=[1, None][i % 2], d_state=int(rng.choice([2, 4, 6])))
        torch.manual_seed(SEED + i)
        model = SashimiLM(config).double()
        with torch.no_grad():
            for module in model.modules():
                if module.__class__.__name__ == "SSMKernel":
                    module.inv_dt.uniform_(math.log(1e-4), 0.0)
                    module.A_imag.uniform_(-30, 30)
                    module.A_real.uniform_(-2, 2)
        state = {k: v.detach().double().numpy().copy() if v.is_floating_point() else v.numpy().copy() for k, v in model.state_dict().items()}
        x = torch.from_numpy(rng.integers(0, 256, (2, 4 * math.prod(config.pool))))
        with torch.no_grad():
            got = model(x)
        c = spec.compare(got, ref_model.language_model(state, config.to_dict(), x.numpy()), "model_float64")
        rows.append(Row("reference", f"whole model vs reference, random config {i} ({config.d_model=}, {config.pool=}, {config.n_ssm=})".replace("config.", ""),
                        f"max diff {c.error:.2e}", f"<= {c.bound:.1e}", c.holds))
        kernel = next(m for m in model.modules() if m.__class__.__name__ == "SSMKernel")
        prefix = next(n for n, m in model.named_modules() if m is kernel)
        sub = {"layer.kernel." + k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
        with torch.no_grad():
            K = kernel(17)
        c = spec.compare(K, ref_layer.s4_kernel(sub, 17), "kernel_float64")
        rows.append(Row("reference", f"kernel vs reference, random config {i}", f"max diff {c.error:.2e}", f"<= {c.bound:.1e}", c.holds))
    return rows


def consistency_rows() -> list[Row]:
    """Identities a change must keep: decoder modes are slices of the full logits; a cached kernel
    follows an in-place parameter edit exactly as a recomputed one does."""
    from sashimi.kernel import kernel_cache

    rows = []
    torch.manual_seed(SEED)
    model = SashimiLM(tiny_config(8)).double().eval()
    x = torch.from_numpy(np.random.default_rng(SEED).integers(0, 256, (2, 16)))
    with torch.no_grad():
        full = model(x)
        for l_output, expected in ((0, full[:, -1]), (3, full[:, -3:])):
            model.decoder.l_output = l_output
            c = spec.compare(model(x), expected, "model_float64")  # another GEMM shape: rounding only
            rows.append(Row("identity", f"decoder l_output={l_output} == the last positions of l_output=None", f"max diff {c.error:.2e}", f"<= {c.bound:.1e}", c.holds))
        model.decoder.l_output = None
        kernel = model.backbone.c_layers[0].layer.layer.kernel
        kernel(16)  # cached
        kernel.A_real.add_(0.1)
        cached = kernel(16)
        with kernel_cache(False):
            fresh = kernel(16)
    d = max_diff(cached.numpy(), fresh.numpy())
    rows.append(Row("identity", "kernel cache follows an in-place parameter edit", f"max diff {d:.2e}", "0", d == 0.0))
    try:
        model(torch.full((1, 16), 256))
        refused = "accepted"
    except ValueError:
        refused = "ValueError"
    rows.append(Row("identity", "token C = 256 of an 8-bit model is refused", refused, "ValueError", refused == "ValueError"))
    return rows


def clip_rows() -> list[Row]:
    """Training clips the gradient norm: one plain SGD step (lr 1) through the training step moves
    the parameters by exactly the clip when the gradient is larger."""
    torch.manual_seed(SEED)
    model = SashimiLM(tiny_config(8)).double()
    x = torch.from_numpy(np.random.default_rng(SEED).integers(0, 256, (2, 16)))
    with torch.no_grad():
        model(x)  # the first forward writes C~ into C (the published convention): not a training update
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    optimization_step(LossModel(model), model, torch.optim.SGD(model.parameters(), lr=1.0), x, x, grad_clip=1e-3)
    moved = float((torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm())
    return [Row("identity", "training step clips the gradient norm (SGD, lr 1, clip 1e-3)", f"{moved:.6e}", "1e-03", abs(moved - 1e-3) <= 1e-8)]


def optimizer_rows() -> list[Row]:
    """The optimizer and schedule training builds, against specs/presets.json `optimizer`."""
    want = spec.load("presets")["optimizer"]
    model = SashimiLM(tiny_config(8))
    optimizer, scheduler = make_optimizer(model, TrainConfig(preset="tiny", lr=0.004).resolved())
    ssm = optimizer.param_groups[1]
    measured = {
        "betas": list(optimizer.defaults["betas"]),
        "weight_decay": optimizer.param_groups[0]["weight_decay"],
        "ssm_lr": ssm["lr"],
        "ssm_weight_decay": ssm["weight_decay"],
        "plateau_factor": scheduler.factor,
        "plateau_patience": scheduler.patience,
    }
    return [Row("specs", f"optimizer {key}", str(measured[key]), str(want[key]), measured[key] == want[key]) for key in measured]


def published_rows(fixtures: Path | None) -> list[Row]:
    from sashimi import interop

    candidates = [fixtures] if fixtures else [Path(os.environ["SASHIMI_FIXTURES"])] if "SASHIMI_FIXTURES" in os.environ else [ROOT.parent / "shared" / "fixtures"]
    folder = candidates[0]
    paths = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    if not paths:
        return [Row("published", f"published fixtures in {folder}", "not found", "-", None)]
    rows = []
    for path in paths:
        for r in interop.check(path):
            rows.append(Row("published", f"{path.stem}: {r.name}", f"max diff {r.error:.2e}", f"<= {r.bound:.1e}", r.holds))
    return rows


def guarded(group: str, make_rows) -> list[Row]:
    try:
        return make_rows()
    except Exception as e:  # report, do not crash: the failing group is named
        return [Row(group, f"{group} checks", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", "computed without error", False)]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sashimi.check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update-golden", action="store_true", help="rewrite tests/golden/golden.npz and print what changed")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--fixtures", type=Path, help="folder of published fixtures (default: SASHIMI_FIXTURES or ../shared/fixtures)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.update_golden:
        update_golden(golden_outputs())
        return 0
    if not GOLDEN.is_file():
        print(f"error: golden file {GOLDEN} not found; create it with --update-golden", file=sys.stderr)
        return 2
    errors: dict[str, str] = {}
    measured = golden_outputs(errors)
    rows = spec_rows() + golden_rows(measured, dict(np.load(GOLDEN)), errors) + guarded("identity", consistency_rows) + guarded("specs", optimizer_rows) + guarded("identity", clip_rows) + guarded("reference", reference_rows) + guarded("published", lambda: published_rows(args.fixtures))
    failed = [r for r in rows if r.passed is False]
    if args.json:
        print(json.dumps({"ok": not failed, "seconds": time.perf_counter() - start, "checks": [r.as_dict() for r in rows]}, indent=1))
    else:
        for r in rows:
            verdict = {True: "pass", False: "FAIL", None: "skip"}[r.passed]
            print(f"  [{verdict}] {r.group:<9s} {r.name:<78s} {r.measured:<20s} expected {r.expected}")
        print(f"{len(rows) - len(failed)} of {len(rows)} checks pass ({sum(r.passed is None for r in rows)} skipped) in {time.perf_counter() - start:.0f} s")
        for r in failed:
            print(f"FAILED: {r.group}: {r.name}: measured {r.measured}, expected {r.expected}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

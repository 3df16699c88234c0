"""python -m sashimi.train: train SaShiMi on a folder of audio (or the embedded synthetic set).

With no arguments: the tiny preset on the embedded synthetic dataset for at most 3 minutes,
then one generated sample and the loss plot, all under runs/<timestamp>/.
Several processes: `torchrun --nproc_per_node=N -m sashimi.train ...` trains with
DistributedDataParallel (gloo on CPU, nccl on CUDA); --batch-size is the global batch.
"""

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from sashimi import checkpoint, data, metrics, spec
from sashimi.model import ModelConfig, SashimiLM
from sashimi.specs import model_config, preset_names

SSM_PARAMETERS = ("inv_dt", "A_real", "A_imag", "B", "P")


@dataclass
class TrainConfig:
    """Every field is a flag: --preset, --data, --bits, ... (None: the preset's value)."""

    preset: str = "tiny"
    data: str | None = None
    bits: int | None = None
    quantization: str | None = None
    seq_len: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    max_steps: int | None = None
    max_minutes: float | None = 3.0
    out: str = "runs"
    resume: str | None = None
    device: str = "auto"
    seed: int = 0
    eval_every: int = 100
    eval_batches: int = 16
    ssm_lr: float = 0.001
    grad_clip: float = 1.0
    sample_seconds: float = 1.0

    def resolved(self) -> "TrainConfig":
        """Fill every None from the preset (DESIGN section 5) and check the values."""
        if self.preset not in preset_names():
            raise ValueError(f"unknown preset {self.preset!r}; choose one of: {', '.join(preset_names())}")
        defaults = spec.load("presets")[self.preset]["train"]
        c = dataclasses.replace(self)
        for name in ("bits", "quantization", "seq_len", "batch_size", "lr"):
            if getattr(c, name) is None:
                setattr(c, name, defaults[name])
        if c.bits not in (8, 16):
            raise ValueError(f"--bits must be 8 or 16; got {c.bits}")
        if c.quantization not in ("mulaw", "linear"):
            raise ValueError(f"--quantization must be mulaw or linear; got {c.quantization!r}")
        multiple = math.prod(spec.load("presets")[self.preset]["model"]["pool"])
        if c.seq_len < 1 or c.seq_len % multiple:
            raise ValueError(f"--seq-len must be a positive multiple of prod(pool) = {multiple}; got {c.seq_len}")
        if c.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1; got {c.batch_size}")
        if c.max_steps is None and c.max_minutes is None:
            raise ValueError("give --max-steps or --max-minutes (or both): training needs a stop")
        return c

    def model_config(self) -> ModelConfig:
        return model_config(self.preset, self.bits)


class LossModel(nn.Module):
    """What DDP wraps: tokens and targets in, (summed loss, count) out. 16-bit uses the chunked
    linear cross-entropy, so no (B, L, 65536) logits tensor exists in training."""

    def __init__(self, lm: SashimiLM):
        super().__init__()
        self.lm = lm

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        head = self.lm.decoder.output_transform
        return metrics.loss_sum_and_count(self.lm.features(x), head.weight, head.bias, y, chunked=self.lm.config.bits > 8)


def param_groups(model: nn.Module, lr: float, ssm_lr: float) -> list[dict]:
    """The SSM parameters (Delta, A, B, P) get their own lr and no weight decay (DESIGN section 5)."""
    ssm, rest = [], []
    for name, p in model.named_parameters():
        (ssm if name.rsplit(".", 1)[-1] in SSM_PARAMETERS and ".kernel." in name else rest).append(p)
    return [{"params": rest, "lr": lr, "weight_decay": 0.0}, {"params": ssm, "lr": ssm_lr, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, config: TrainConfig):
    optimizer = torch.optim.AdamW(param_groups(model, config.lr, config.ssm_lr), betas=(0.9, 0.999), weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.2, patience=20)
    return optimizer, scheduler


class EpochBatches:
    """A deterministic distributed sampler: the global batch of step s is a slice of the
    permutation of epoch s // steps_per_epoch (seeded by (seed, epoch)); rank r takes its
    contiguous share. Depends on the step alone, so a resumed run sees the same batches."""

    def __init__(self, n_items: int, global_batch: int, seed: int, rank: int = 0, world: int = 1):
        if global_batch % world:
            raise ValueError(f"--batch-size {global_batch} must be divisible by the number of processes {world}")
        self.n, self.global_batch, self.seed, self.rank, self.world = n_items, global_batch, seed, rank, world
        self.steps_per_epoch = max(1, n_items // global_batch)

    def indices(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.steps_per_epoch)
        rng = np.random.default_rng([self.seed, epoch])
        order = np.concatenate([rng.permutation(self.n) for _ in range(math.ceil(self.global_batch / self.n))])
        batch = order[k * self.global_batch : (k + 1) * self.global_batch] if self.n >= self.global_batch else order[: self.global_batch]
        share = self.global_batch // self.world
        return batch[self.rank * share : (self.rank + 1) * share].tolist()


def optimization_step(loss_model: nn.Module, model: nn.Module, optimizer, x: torch.Tensor, y: torch.Tensor, grad_clip: float, world: int = 1) -> float:
    """One AdamW step on the global mean loss over non-padding positions; returns that loss.

    Across processes the summed loss is divided by the global count and multiplied by the
    number of processes, because DDP averages gradients: the result is the gradient of the
    global mean, the same as one process on the whole batch.
    """
    loss_sum, count = loss_model(x, y)
    totals = torch.tensor([float(loss_sum.detach()), float(count)], dtype=torch.float64, device=x.device)
    if world > 1:
        dist.all_reduce(totals)
    global_count = max(1.0, float(totals[1]))
    (loss_sum * world / global_count).backward()
    loss = float(totals[0]) / global_count
    if math.isfinite(loss):
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def collate(dataset, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [dataset[i] for i in indices]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here")
    return device


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def datasets(config: TrainConfig, run_dir: Path, log) -> tuple[data.AudioDataset, data.AudioDataset, Path]:
    folder = Path(config.data) if config.data else run_dir / "data"
    if not config.data:
        if not folder.exists():
            log(f"no --data given: writing the embedded synthetic dataset to {folder}")
            data.write_synthetic_dataset(folder)
    sample_rate = spec.load("presets")[config.preset]["train"]["sample_rate"]
    train = data.AudioDataset(folder, "train", config.seq_len, config.bits, config.quantization, sample_rate)
    try:
        validation = data.AudioDataset(folder, "validation", config.seq_len, config.bits, config.quantization, sample_rate)
    except ValueError:
        log(f"no validation files under {folder}: validating on the training files")
        validation = train
    return train, validation, folder


class Run:
    """Everything a training run holds; `state()` and `load()` make it resumable bit for bit."""

    def __init__(self, config: TrainConfig, run_dir: Path, rank: int = 0, world: int = 1, device: torch.device | None = None):
        self.config, self.run_dir, self.rank, self.world = config, run_dir, rank, world
        self.device = device or pick_device(config.device)
        torch.manual_seed(config.seed)
        self.model = SashimiLM(config.model_config()).to(self.device)
        self.optimizer, self.scheduler = make_optimizer(self.model, config)
        self.step = 0
        self.best_val = math.inf

    def state(self) -> dict:
        return {
            "config": {"model": self.model.config.to_dict(), "train": dataclasses.asdict(self.config)},
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "step": self.step,
            "best_val": self.best_val,
        }

    def load(self, payload: dict) -> None:
        self.model.load_state_dict(payload["model"], strict=True)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        set_rng_state(payload["rng"])
        self.step = int(payload["step"])
        self.best_val = float(payload.get("best_val", math.inf))

    def save(self, name: str = "checkpoint.pt") -> Path:
        return checkpoint.save(self.state(), self.run_dir / name)


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def plot_losses(metrics_path: Path, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]
    val = [(r["step"], r["loss"]) for r in records if r["kind"] == "validation"]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train", alpha=0.6)
    if val:
        ax.plot(*zip(*val), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per sample)")
    ax.set_title("SaShiMi training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def resolve_resume(path: str) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.pt"
    if not p.is_file():
        raise checkpoint.CheckpointError(f"--resume: no checkpoint at {p}")
    return p


def train(config: TrainConfig) -> Path:
    """Run training; returns the run directory."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    distributed = world > 1
    payload = None
    if config.resume:
        resume_path = resolve_resume(config.resume)
        payload = checkpoint.load(resume_path)
        saved = TrainConfig(**payload["config"]["train"])
        # a resumed run keeps its configuration; only the stopping rule and the device may change
        config = dataclasses.replace(saved, max_steps=config.max_steps, max_minutes=config.max_minutes, device=config.device, resume=config.resume)
        run_dir = resume_path.parent
    config = config.resolved()
    device = pick_device(config.device)
    if distributed:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if payload is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path(config.out) / stamp
        if distributed:  # every rank must agree on the folder
            holder = [str(run_dir)]
            dist.broadcast_object_list(holder, src=0)
            run_dir = Path(holder[0])
    is_main = rank == 0

    def log(message: str) -> None:
        if is_main:
            tqdm.write(message, file=sys.stderr)

    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if distributed:
        dist.barrier()
    train_set, val_set, folder = datasets(config, run_dir, log)
    run = Run(config, run_dir, rank, world, device)
    if payload is not None:
        run.load(payload)
        log(f"resumed {run_dir} at step {run.step}")
    loss_model: nn.Module = LossModel(run.model)
    if distributed:
        loss_model = nn.parallel.DistributedDataParallel(loss_model, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = EpochBatches(len(train_set), config.batch_size, config.seed, rank, world)
    metrics_path = run_dir / "metrics.jsonl"
    if is_main:
        (run_dir / "config.json").write_text(json.dumps({"model": run.model.config.to_dict(), "train": dataclasses.asdict(config), "data_folder": str(folder)}, indent=1))
        log(f"run {run_dir}: {config.preset} {config.bits}-bit, {run.model.num_params():,} parameters, "
            f"{len(train_set)} training clips of {config.seq_len} samples, device {device}, {world} process(es)")

    def validate() -> dict:
        batches = (collate(val_set, list(range(i, min(i + config.batch_size, len(val_set))))) for i in range(0, len(val_set), config.batch_size))
        return metrics.evaluate(run.model, batches, config.bits, device, max_batches=config.eval_batches)

    start, start_step = time.monotonic(), run.step
    deadline = start + 60 * config.max_minutes if config.max_minutes is not None else math.inf
    total = config.max_steps if config.max_steps is not None else None
    bar = tqdm(total=total, initial=run.step, disable=not is_main, unit="step", dynamic_ncols=True)
    run.model.train()
    try:
        while (config.max_steps is None or run.step < config.max_steps) and time.monotonic() < deadline:
            x, y = collate(train_set, sampler.indices(run.step))
            x, y = x.to(device), y.to(device)
            loss = optimization_step(loss_model, run.model, run.optimizer, x, y, config.grad_clip, world if distributed else 1)
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at step {run.step + 1}; the last good checkpoint is kept in {run_dir}")
            run.step += 1
            bar.update(1)
            elapsed = time.monotonic() - start
            rate = (run.step - start_step) * config.batch_size * config.seq_len / max(elapsed, 1e-9)
            bar.set_postfix(loss=f"{loss:.3f}", samples_per_s=f"{rate:,.0f}")
            if is_main:
                append_jsonl(metrics_path, {"kind": "train", "step": run.step, "loss": loss, "lr": run.optimizer.param_groups[0]["lr"]})
            if run.step % config.eval_every == 0:
                evaluate_and_save(run, validate, metrics_path, is_main, log)
    except KeyboardInterrupt:
        if is_main:
            run.save()
            log(f"interrupted at step {run.step}: checkpoint saved to {run_dir / 'checkpoint.pt'}; resume with --resume {run_dir}")
        raise
    finally:
        bar.close()
    if run.step % config.eval_every != 0 or run.step == start_step:
        evaluate_and_save(run, validate, metrics_path, is_main, log)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    if is_main:
        plot = plot_losses(metrics_path, run_dir / "loss.png")
        log(f"trained {run.step - start_step} steps in {time.monotonic() - start:.0f} s; checkpoint {run_dir / 'checkpoint.pt'}; loss plot {plot}")
        if config.sample_seconds > 0:
            from sashimi import generate

            written = generate.generate_to_folder(run.model, config.bits, config.quantization, run_dir / "samples", n_samples=1,
                                                  length=int(config.sample_seconds * 16000), seed=config.seed, log=log)
            log(f"generated sample: {', '.join(str(p) for p in written)}")
    return run_dir


def evaluate_and_save(run: Run, validate, metrics_path: Path, is_main: bool, log) -> None:
    result = validate()
    run.scheduler.step(result["loss"])
    run.best_val = min(run.best_val, result["loss"])
    if is_main:
        append_jsonl(metrics_path, {"kind": "validation", "step": run.step, **result})
        run.save()
        log(f"step {run.step}: validation loss {result['loss']:.4f} nats, {result['bits_per_sample']:.3f} bits/sample, accuracy {result['accuracy']:.3f}")


def parse_args(argv: list[str] | None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="python -m sashimi.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    helps = {
        "preset": f"model and training preset: {', '.join(preset_names())} (specs/presets.json)",
        "data": "folder of .wav/.flac files, searched recursively (default: the embedded synthetic dataset)",
        "bits": "8 or 16 (default: the preset's)",
        "quantization": "mulaw or linear (default: the preset's)",
        "seq_len": "samples per training clip, a multiple of prod(pool) (default: the preset's)",
        "batch_size": "global batch size (default: the preset's)",
        "lr": "learning rate of all but the SSM parameters (default: the preset's)",
        "max_steps": "stop after this many optimizer steps",
        "max_minutes": "stop after this many minutes of training",
        "out": "runs are written to OUT/<timestamp>/",
        "resume": "a run folder or checkpoint to continue, bit for bit",
        "device": "auto, cpu, cuda or cuda:N",
        "seed": "seed of initialization and data order",
        "eval_every": "validate and checkpoint every this many steps",
        "eval_batches": "validation batches per evaluation",
        "ssm_lr": "learning rate of the SSM parameters (Delta, A, B, P)",
        "grad_clip": "gradient norm clip",
        "sample_seconds": "seconds of audio to generate at the end (0: none)",
    }
    for f in dataclasses.fields(TrainConfig):
        kind = f.type if f.type in (int, float, str) else next(t for t in typing.get_args(f.type) if t is not type(None))
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=f.default, help=helps.get(f.name))
    return TrainConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_args(argv)
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            train(config)
        return 0
    except KeyboardInterrupt:
        return 130
    except (ValueError, FloatingPointError, checkpoint.CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

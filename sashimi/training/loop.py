"""The training loop: a resumable run (model, optimizer, schedule, RNG, step) over an audio folder.

A run folder holds config.json, metrics.jsonl, checkpoint.pt (atomic), loss.png and samples/.
Several processes (torchrun) train with DistributedDataParallel on shares of one global batch.
"""

import contextlib
import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from sashimi.audio.dataset import IGNORE_INDEX, AudioDataset, folder_fingerprint
from sashimi.core.cli import pick_device
from sashimi.core.config import ModelConfig, TrainConfig
from sashimi.core.lock import exclusive
from sashimi.core.progress import progress_bar
from sashimi.io import checkpoint
from sashimi.model.lm import SashimiLM
from sashimi.sampling.write import check_generation_fits
from sashimi.training import memory, runs
from sashimi.training.closing import finish
from sashimi.training.data import check_data_unchanged, data_folder, datasets, write_embedded_data
from sashimi.training.metrics import LossModel, evaluate
from sashimi.training.optimizer import make_optimizer, optimization_step
from sashimi.training.processes import Processes, new_run_dir, rng_state, set_rng_state, start_processes
from sashimi.training.sampler import EpochBatches, collate, sequential_batches


class Run:
    """Everything a training run holds; `state()` and `load()` make it resumable bit for bit."""

    def __init__(
        self, config: TrainConfig, run_dir: Path, device: torch.device, model_config: ModelConfig | None = None
    ):
        self.config, self.run_dir, self.device = config, run_dir, device
        torch.manual_seed(config.seed)
        self.model = SashimiLM(model_config or config.model_config()).to(device)
        self.optimizer, self.scheduler = make_optimizer(self.model, config.lr, config.ssm_lr)
        self.step = 0
        self.best_val = math.inf
        self.last_validation: dict[str, float] | None = None  # the metrics of this process's last validation
        self.data: dict | None = None  # the fingerprint of the data folder's file list (checked on resume)

    def state(self) -> dict:
        return {
            "config": {"model": self.model.config.to_dict(), "train": dataclasses.asdict(self.config)},
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "step": self.step,
            "best_val": self.best_val,
            "data": self.data,
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


def train(config: TrainConfig, given: frozenset[str] | None = None) -> Path:
    """Run training; returns the run directory. `given`: the flags given (runs.starting_point)."""
    procs = Processes.from_environment()
    start = runs.starting_point(config, given)
    config = start.config
    if config.batch_size % procs.world:  # before any process joins or any folder exists
        raise ValueError(f"--batch-size {config.batch_size} must be divisible by the number of processes {procs.world}")
    device = pick_device(config.device)
    if config.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use float32")
    per_process = max(1, config.batch_size // procs.world)
    memory.check_fits(
        start.model_config, per_process, config.seq_len, device, "a training step", "--seq-len or --batch-size"
    )
    if procs.distributed:
        device = start_processes(device, procs)
    run_dir = start.run_dir or new_run_dir(config, procs)  # a resumed run's folder, or a new one (every rank's)
    with exclusive(run_dir, "training run") if procs.is_main else contextlib.nullcontext():
        run, train_set, val_set, folder = prepare_run(start, run_dir, device, procs)
        record_start(run, start, len(train_set), folder, procs)
        start_step, started = run.step, time.monotonic()
        fit(run, train_set, val_set, procs)
        if procs.distributed:  # the group's shutdown: a run's files are the same without it
            dist.barrier()  # mutate: skip only rank 0 writes after it, and rank 0 waits for nobody
            dist.destroy_process_group()  # mutate: skip torchrun ends the group when the processes end
        if procs.is_main and run.step > start_step:
            finish(run, val_set, start_step, started, procs.log)
    return run_dir


def prepare_run(
    start: runs.Start, run_dir: Path, device: torch.device, procs: Processes
) -> tuple[Run, AudioDataset, AudioDataset, Path]:
    """The data and the run's state before its first step: everything that can refuse a run. A new
    run refused here leaves no folder behind."""
    try:
        train_set, val_set, folder = run_data(start, run_dir, procs)
        return starting_run(start, run_dir, device, folder, procs), train_set, val_set, folder
    except BaseException:
        if start.payload is None and procs.is_main:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def run_data(start: runs.Start, run_dir: Path, procs: Processes) -> tuple[AudioDataset, AudioDataset, Path]:
    """The training and validation splits and their folder; a resumed run refuses a changed folder."""
    write_embedded_data(start.config, run_dir, procs)
    if start.payload is not None:
        check_data_unchanged(start.config, start.payload, data_folder(start.config, run_dir), procs)
    return datasets(start.config, run_dir, procs.log)


def starting_run(start: runs.Start, run_dir: Path, device: torch.device, folder: Path, procs: Processes) -> Run:
    """The run at its first step: fresh, with --init's weights, or in --resume's state."""
    run = Run(start.config, run_dir, device, start.model_config)
    if start.init_state is not None:
        runs.load_init_weights(run.model, start.init_state, start.config.init)
        procs.log(f"initialized from {start.config.init} (weights only: fresh optimizer and schedule)")
    if start.payload is not None:
        run.load(start.payload)
    if start.config.sample_seconds > 0:  # the closing sample must fit before a step is spent  # mutate: skip 0 s fits
        length = round(start.config.sample_seconds * start.config.sample_rate)
        check_generation_fits(run.model, 1, length, 0, 1, "--sample-seconds (0: no closing sample)")
    run.data = folder_fingerprint(folder)  # what it trains on (a resume's changes only under --allow-changed-data)
    return run


def record_start(run: Run, start: runs.Start, n_clips: int, folder: Path, procs: Processes) -> None:
    """Drop what a resumed run logged after its checkpoint, write config.json, and say where the run starts."""
    config, run_dir = start.config, run.run_dir
    if start.payload is not None:
        dropped = runs.truncate_metrics(run_dir / "metrics.jsonl", run.step) if procs.is_main else 0
        procs.log(
            f"resumed {run_dir} at step {run.step}"
            + (f" (dropped {dropped} metrics records logged after that step)" if dropped else "")
        )
    for note in start.notes:
        procs.log(f"notice: {note}")
    if not procs.is_main:
        return
    saved = {"model": run.model.config.to_dict(), "train": dataclasses.asdict(config), "data_folder": str(folder)}
    (run_dir / "config.json").write_text(json.dumps(saved, indent=1))
    origin = f"the model of {config.init}" if config.init else config.preset
    procs.log(
        f"run {run_dir}: {origin} {config.bits}-bit, {run.model.num_params():,} parameters, "
        f"{n_clips} training clips of {config.seq_len} samples, device {run.device}, {procs.world} process(es)"
    )


def last_good(run: Run) -> str:
    path = run.run_dir / "checkpoint.pt"
    return f"the last good checkpoint is kept: {path}" if path.is_file() else "no checkpoint was written"


def validate(run: Run, val_set: AudioDataset, procs: Processes, scheduled: bool = True) -> None:
    """Evaluate on the validation split, record it and save a checkpoint; `scheduled`: also step the
    plateau schedule (only the --eval-every validations do, so where a run stops does not change it)."""
    config = run.config
    batches = sequential_batches(val_set, config.batch_size)
    result = evaluate(run.model, batches, config.bits, run.device, max_batches=config.eval_batches)
    if not (math.isfinite(result["loss"]) and weights_finite(run.model)):
        raise FloatingPointError(
            f"the model diverged by step {run.step} (validation loss {result['loss']}); {last_good(run)}"
        )
    run.last_validation = result
    if scheduled:
        run.scheduler.step(result["loss"])
        run.best_val = min(run.best_val, result["loss"])
    if procs.is_main:
        runs.append_jsonl(run.run_dir / "metrics.jsonl", {"kind": "validation", "step": run.step, **result})
        run.save()
        procs.log(
            f"step {run.step}: validation loss {result['loss']:.4f} nats, {result['bits_per_sample']:.3f} "
            f"bits/sample, accuracy {result['accuracy']:.3f}"
        )


def fit(run: Run, train_set: AudioDataset, val_set: AudioDataset, procs: Processes) -> None:
    """Optimization steps until --max-steps or --max-minutes; validate and checkpoint every
    --eval-every steps and at the end; Ctrl-C saves a checkpoint first."""
    config, device = run.config, run.device
    loss_model = distributed(LossModel(run.model, config.precision), device, procs)
    sampler = EpochBatches(len(train_set), config.batch_size, config.seed, procs.rank, procs.world)
    start, start_step, real = time.monotonic(), run.step, 0
    deadline = start + 60 * config.max_minutes if config.max_minutes is not None else math.inf
    bar = progress_bar(
        total=config.max_steps, initial=run.step, disable=not procs.is_main, unit="step", dynamic_ncols=True
    )
    run.model.train()
    try:
        while (config.max_steps is None or run.step < config.max_steps) and time.monotonic() < deadline:
            x, y = collate(train_set, sampler.indices(run.step))
            loss = optimization_step(
                loss_model, run.model, run.optimizer, x.to(device), y.to(device), config.grad_clip, procs.world
            )
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at step {run.step + 1}; {last_good(run)}")
            run.step += 1
            real += int((y != IGNORE_INDEX).sum()) * procs.world  # audio, not padding: this share times the shares
            rate = real / max(time.monotonic() - start, 1e-9)
            bar.set_postfix(loss=f"{loss:.3f}", samples_per_s=f"{rate:,.0f}", refresh=False)  # drawn by update
            bar.update(1)
            if procs.is_main:
                record = {"kind": "train", "step": run.step, "loss": loss, "lr": run.optimizer.param_groups[0]["lr"]}
                runs.append_jsonl(run.run_dir / "metrics.jsonl", record)
            if run.step % config.eval_every == 0:
                validate(run, val_set, procs)
    except KeyboardInterrupt:
        save_interrupted(run, procs)
        raise
    finally:
        bar.close()
    close_fit(run, val_set, start_step, procs)


def distributed(loss_model: nn.Module, device: torch.device, procs: Processes) -> nn.Module:
    """Under torchrun, DistributedDataParallel averages the gradients of every process's share."""
    if not procs.distributed:
        return loss_model
    return nn.parallel.DistributedDataParallel(loss_model, device_ids=[device.index] if device.type == "cuda" else None)


def save_interrupted(run: Run, procs: Processes) -> None:
    """Ctrl-C: save the run where it stands, unless its weights went non-finite."""
    if not procs.is_main:
        return
    if weights_finite(run.model):
        run.save()
        procs.log(
            f"interrupted at step {run.step}: checkpoint saved to {run.run_dir / 'checkpoint.pt'}; resume with "
            f"--resume {run.run_dir}"
        )
    else:
        procs.log(f"interrupted at step {run.step} with non-finite weights: nothing saved; {last_good(run)}")


def close_fit(run: Run, val_set: AudioDataset, start_step: int, procs: Processes) -> None:
    """The closing validation and checkpoint, unless the last step already had them."""
    config = run.config
    if run.step == start_step and (run.run_dir / "checkpoint.pt").is_file():
        if procs.is_main:  # no step, but the settings it was resumed with (a stop, a moved data folder) are kept
            run.save()
        procs.log(
            f"nothing to train: the run is at step {run.step} (--max-steps {config.max_steps}); nothing was added to it"
        )
        return
    if run.step % config.eval_every != 0 or run.step == start_step:
        # off the --eval-every cadence (or a repeat of its last validation): recorded and saved, but
        # not shown to the schedule, which a straight run through this step never does either
        validate(run, val_set, procs, scheduled=False)


def weights_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())

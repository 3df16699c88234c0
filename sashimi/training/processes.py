"""A run's processes: this process's place among torchrun's, joining the group, the run folder every
rank agrees on, and the RNG states a checkpoint carries."""

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from sashimi.core.config import TrainConfig
from sashimi.training import runs


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():  # mutate: skip CUDA only (tests/test_cuda.py, tox -e gpu)
        state["cuda"] = torch.cuda.get_rng_state_all()  # mutate: skip CUDA only (tests/test_cuda.py)
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():  # mutate: skip CUDA only (tests/test_cuda.py, tox -e gpu)
        torch.cuda.set_rng_state_all(state["cuda"])  # mutate: skip CUDA only (tests/test_cuda.py)


@dataclass
class Processes:
    """This process's place among the training processes (torchrun's environment)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def from_environment(cls) -> "Processes":
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def log(self, message: str) -> None:
        if self.is_main:
            tqdm.write(message, file=sys.stderr)


def error_line(message: str, procs: Processes) -> str | None:
    """The `error:` line this process prints, if any. Before the group starts, every rank fails the
    same check of the same flags, so rank 0 alone says it; once it has started, a failure may be one
    rank's own (its data, its device), so each rank that fails says it, naming itself."""
    if not procs.distributed:
        return f"error: {message}"
    if dist.is_initialized():
        return f"error: rank {procs.rank} of {procs.world}: {message}"
    return f"error: {message}" if procs.is_main else None


def start_processes(device: torch.device, procs: Processes) -> torch.device:
    """Join the process group (nccl on CUDA, gloo on CPU); each CUDA process takes its local GPU."""
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def new_run_dir(config: TrainConfig, procs: Processes) -> Path:
    """Rank 0 creates the run folder exclusively (`runs.new_run_dir`); every process agrees on it."""
    run_dir = runs.new_run_dir(config.out) if procs.is_main else Path()
    if procs.distributed:
        holder = [str(run_dir)]
        dist.broadcast_object_list(holder, src=0)
        run_dir = Path(holder[0])
    return run_dir

"""A run's data: the training and validation splits of --data or of the embedded synthetic dataset
(written once into the run, by the main process), and the check that a resumed run reads the files
it was trained on."""

import shutil
from pathlib import Path

import numpy as np
import torch.distributed as dist

from sashimi.audio.dataset import AudioDataset, EmptySplitError, folder_fingerprint
from sashimi.audio.synthetic import write_synthetic_dataset
from sashimi.core.config import TrainConfig


def datasets(config: TrainConfig, run_dir: Path, log) -> tuple[AudioDataset, AudioDataset, Path]:
    """Training and validation splits of --data (or of the synthetic corpus, written into the run).
    The split is by file-name hash (README, "Data"); a folder too small to have a file in the
    training split trains on all its files, and one with none in the validation split validates on
    the training files, each with a notice."""
    folder = data_folder(config, run_dir)
    settings = (config.seq_len, config.bits, config.quantization, config.sample_rate)
    try:
        train = AudioDataset(folder, "train", *settings)
    except EmptySplitError:
        train = AudioDataset(folder, None, *settings)
        log(
            f"no file under {folder} falls in the training split (80% of names by hash): training on all "
            f"{len(train.files)} files"
        )
    for notice in degenerate(train, config.batch_size):
        log(f"notice: {notice}")
    try:
        validation = AudioDataset(folder, "validation", *settings)
    except ValueError:
        log(f"no validation files under {folder}: validating on the training files")
        validation = train
    return train, validation, folder


def degenerate(train: AudioDataset, batch_size: int) -> list[str]:
    """What makes the training data say less than it seems, with its numbers: one value throughout
    (silence), clips mostly padding, batches larger than the split (each clip repeated in a batch)."""
    out = []
    values = np.unique(np.concatenate(train.tokens))
    if len(values) == 1:
        out.append(
            f"the {len(train.files)} training files hold one value throughout (token {values[0]}: silence?): "
            "the model learns to repeat it, and its loss says nothing about audio"
        )
    real, positions = sum(len(t) for t in train.tokens), len(train.clips) * train.seq_len
    if real < positions / 2:
        out.append(
            f"{1 - real / positions:.0%} of the training positions are padding (--seq-len {train.seq_len} on files "
            f"of {real / len(train.files):,.0f} samples on average): a shorter --seq-len trains on more audio a step"
        )
    if batch_size > len(train):
        out.append(
            f"--batch-size {batch_size} on {len(train)} training clips: each batch holds every clip about "
            f"{batch_size / len(train):.1f} times"
        )
    return out


def data_folder(config: TrainConfig, run_dir: Path) -> Path:
    """--data, or the run's own copy of the embedded synthetic dataset."""
    return Path(config.data) if config.data else run_dir / "data"


def write_embedded_data(config: TrainConfig, run_dir: Path, procs) -> None:
    """Without --data, the main process writes the synthetic dataset into the run (under a hidden
    name, then renamed: a folder that exists is complete); the others wait at a barrier until it
    has, so none lists a folder still being written."""
    folder = data_folder(config, run_dir)
    if not config.data and procs.is_main and not folder.exists():
        procs.log(f"no --data given: writing the embedded synthetic dataset to {folder}")
        partial = folder.with_name(f".{folder.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        write_synthetic_dataset(partial)
        partial.rename(folder)
    if procs.distributed:
        dist.barrier()


def check_data_unchanged(config: TrainConfig, payload: dict, folder: Path, procs) -> None:
    """A resumed run reads the data folder it was trained on: its file list (names and sizes) must
    match the fingerprint in the checkpoint, unless --allow-changed-data says to continue anyway."""
    if not folder.is_dir():
        raise ValueError(
            f"--resume: the run's data folder {folder} does not exist (moved?); give its new place with --data"
        )
    saved = payload.get("data")
    if saved is None:  # written before checkpoints recorded their data
        return
    now = folder_fingerprint(folder)
    if now["sha256"] == saved["sha256"]:
        was = (payload.get("config", {}).get("train") or {}).get("data")
        if was and Path(was).resolve() != folder.resolve():
            procs.log(f"notice: the data folder {folder} holds the files the run was trained on (in {was} then)")
        return
    change = (
        f"{saved['files']} files when checkpointed, {now['files']} now"
        if now["files"] != saved["files"]
        else f"{now['files']} files, changed names or sizes"
    )
    if not config.allow_changed_data:
        raise ValueError(
            f"--resume: the data folder {folder} changed since the checkpoint ({change}): the run would not continue "
            "bit for bit; restore the folder, or continue on it anyway with --allow-changed-data"
        )
    procs.log(
        f"--allow-changed-data: continuing on the changed data folder {folder} ({change}); the run is no longer what a "
        "straight run would be"
    )

"""A checkpoint's metrics on every audio file of a folder, quantized and clipped as in training."""

import math
import os
import time

import numpy as np
import torch

from sashimi.audio.dataset import IGNORE_INDEX, AudioDataset
from sashimi.core.config import audio_settings
from sashimi.core.progress import progress_bar
from sashimi.io.checkpoint import load_model
from sashimi.training import memory
from sashimi.training.metrics import evaluate, unigram_bits
from sashimi.training.sampler import sequential_batches


def validation_unigram_bits(val_set: AudioDataset, batch_size: int, eval_batches: int) -> float:
    """The unigram baseline of exactly the positions a validation reads (its first `eval_batches`
    batches): the entropy of their token histogram, the bits per sample a model must beat."""
    targets = [y[y != IGNORE_INDEX] for _, (_, y) in zip(range(eval_batches), sequential_batches(val_set, batch_size))]
    return unigram_bits(torch.cat(targets), 2**val_set.bits)  # mutate: skip empty classes add no entropy


def evaluate_folder(
    checkpoint_path: str | os.PathLike,
    folder: str | os.PathLike,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    log=lambda message: None,
    progress: bool = False,
) -> dict:
    """Loss, bits_per_sample, bpb, accuracy, accuracy@k, perplexity over every non-padding
    position, and the unigram baseline (entropy of the folder's token histogram). `log` is told
    when the files are read; `progress` shows a bar over the batches on stderr."""
    model, payload = load_model(checkpoint_path, device)
    audio = audio_settings(payload["config"].get("train"))
    memory.check_fits(
        model.config, batch_size, audio.seq_len, torch.device(device), "evaluation", "--batch-size", training=False
    )
    log(f"reading the audio files under {folder}")
    dataset = AudioDataset(folder, None, audio.seq_len, model.config.bits, audio.quantization, audio.sample_rate)
    start = time.perf_counter()
    batches = progress_bar(
        iterable=sequential_batches(dataset, batch_size),
        total=math.ceil(len(dataset) / batch_size),
        desc="evaluating",
        unit="batch",
        leave=False,  # mutate: skip display only: whether the finished bar stays on the terminal
        disable=not progress,
    )
    result = evaluate(model, batches, model.config.bits, torch.device(device))
    result["unigram_bits_per_sample"] = unigram_bits(np.concatenate(dataset.tokens), model.config.n_classes)
    result.update(
        files=len(dataset.files),
        clips=len(dataset),
        seconds=time.perf_counter() - start,
        checkpoint=str(checkpoint_path),
        data=str(folder),
    )
    return result

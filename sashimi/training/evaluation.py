"""A checkpoint's metrics on every audio file of a folder, quantized and clipped as in training."""

import os
import time

import numpy as np
import torch

from sashimi.audio.dataset import AudioDataset
from sashimi.core.config import audio_settings
from sashimi.io.checkpoint import load_model
from sashimi.training import memory
from sashimi.training.metrics import evaluate, unigram_bits
from sashimi.training.sampler import sequential_batches


def evaluate_folder(checkpoint_path: str | os.PathLike, folder: str | os.PathLike, batch_size: int = 8, device: torch.device | str = "cpu") -> dict:
    """Loss, bits_per_sample, bpb, accuracy, accuracy@k, perplexity over every non-padding
    position, and the unigram baseline (entropy of the folder's token histogram)."""
    model, payload = load_model(checkpoint_path, device)
    audio = audio_settings(payload["config"].get("train"))
    memory.check_fits(model.config, batch_size, audio.seq_len, torch.device(device), "evaluation", "--batch-size", training=False)
    dataset = AudioDataset(folder, None, audio.seq_len, model.config.bits, audio.quantization, audio.sample_rate)
    start = time.perf_counter()
    result = evaluate(model, sequential_batches(dataset, batch_size), model.config.bits, torch.device(device))
    result["unigram_bits_per_sample"] = unigram_bits(np.concatenate(dataset.tokens), model.config.n_classes)
    result.update(files=len(dataset.files), clips=len(dataset), seconds=time.perf_counter() - start, checkpoint=str(checkpoint_path), data=str(folder))
    return result

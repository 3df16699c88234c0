"""Which clips each training step sees: a deterministic, resumable, distributed batch sampler."""

import math

import numpy as np
import torch

from sashimi.core.shapes import Int, Tensor


class EpochBatches:
    """The global batch of step s is a slice of the permutation of epoch s // steps_per_epoch
    (seeded by (seed, epoch)); rank r takes its contiguous share. It depends on the step alone,
    so a resumed run sees the same batches."""

    def __init__(self, n_items: int, global_batch: int, seed: int, rank: int = 0, world: int = 1):
        if global_batch % world:
            raise ValueError(f"--batch-size {global_batch} must be divisible by the number of processes {world}")
        self.n, self.global_batch, self.seed, self.rank, self.world = n_items, global_batch, seed, rank, world
        self.steps_per_epoch = max(1, n_items // global_batch)

    def indices(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.steps_per_epoch)
        rng = np.random.default_rng([self.seed, epoch])
        order = np.concatenate([rng.permutation(self.n) for _ in range(math.ceil(self.global_batch / self.n))])
        batch = (
            order[k * self.global_batch : (k + 1) * self.global_batch]
            if self.n >= self.global_batch
            else order[: self.global_batch]
        )
        share = self.global_batch // self.world
        return batch[self.rank * share : (self.rank + 1) * share].tolist()


def collate(dataset, indices: list[int]) -> tuple[Int[Tensor, "B L"], Int[Tensor, "B L"]]:
    """(x, y) of the clips at `indices`, stacked."""
    pairs = [dataset[i] for i in indices]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def sequential_batches(dataset, batch_size: int):
    """(x, y) batches of the whole dataset in order (evaluation)."""
    for start in range(0, len(dataset), batch_size):
        yield collate(dataset, list(range(start, min(start + batch_size, len(dataset)))))

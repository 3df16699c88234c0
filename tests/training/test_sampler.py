"""The batch sampler: coverage, disjoint shards, reshuffling, determinism by step; collate and
sequential_batches. Every expected value is counted from the indices themselves or built by hand."""

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sashimi.training.sampler import EpochBatches, collate, sequential_batches
from tests.helpers import seeds


@st.composite
def sampler_args(draw, max_n: int = 60):
    """(n_items, global_batch, seed, world): the global batch a multiple of the number of processes."""
    world = draw(st.integers(1, 4))
    share = draw(st.integers(1, 5))
    return draw(st.integers(1, max_n)), world * share, draw(seeds), world


def global_batch(n, batch, seed, world, step) -> list[int]:
    """The global batch of `step`: the ranks' shares, in rank order."""
    return [i for rank in range(world) for i in EpochBatches(n, batch, seed, rank, world).indices(step)]


class FakeClips:
    """A dataset whose clip i is x = [i, i + 100], y = [i + 200, i + 300]: every row says which clip it came from."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return torch.tensor([i, i + 100]), torch.tensor([i + 200, i + 300])


@given(sampler_args(), st.integers(0, 3))
def test_an_epoch_sees_distinct_items_and_all_of_them_when_the_batch_divides_n(args, epoch):
    n, batch, seed, world = args
    if n < batch:
        return  # n < global batch: its own test below
    sampler = EpochBatches(n, batch, seed)
    steps = range(epoch * sampler.steps_per_epoch, (epoch + 1) * sampler.steps_per_epoch)
    seen = [i for s in steps for i in global_batch(n, batch, seed, world, s)]
    assert len(seen) == (n // batch) * batch  # whole batches only: the n % batch left-overs wait for another epoch
    assert len(set(seen)) == len(seen) and set(seen) <= set(range(n))
    if n % batch == 0:
        assert sorted(seen) == list(range(n))


@given(sampler_args())
def test_rank_shares_are_disjoint_equal_and_make_up_the_global_batch(args):
    n, batch, seed, world = args
    for step in (0, 1, 7):
        shares = [EpochBatches(n, batch, seed, rank, world).indices(step) for rank in range(world)]
        assert all(len(share) == batch // world for share in shares)
        # one process with the whole batch sees exactly the ranks' shares, in rank order
        assert sum(shares, []) == EpochBatches(n, batch, seed).indices(step)
        if n >= batch:
            flat = sum(shares, [])
            assert len(set(flat)) == len(flat)


@given(sampler_args(), st.integers(0, 5))
def test_global_batches_of_an_epoch_are_its_seeded_permutation_in_order(args, epoch):
    """Epoch e's batches are consecutive slices of the permutation drawn from (seed, e)."""
    n, batch, seed, world = args
    if n < batch:
        return
    steps_per_epoch = n // batch
    permutation = np.random.default_rng([seed, epoch]).permutation(n)
    for k in range(steps_per_epoch):
        expected = permutation[k * batch : (k + 1) * batch].tolist()
        assert global_batch(n, batch, seed, world, epoch * steps_per_epoch + k) == expected


@given(st.integers(10, 60), st.integers(1, 5), seeds)
def test_every_epoch_reshuffles(n, batch, seed):
    """Two epochs, or two seeds, give different orders (10! orders at least: equal only by a broken sampler)."""
    sampler = EpochBatches(n, batch, seed)
    per_epoch = sampler.steps_per_epoch

    def epoch_order(s, e):
        return [i for k in range(per_epoch) for i in EpochBatches(n, batch, s).indices(e * per_epoch + k)]

    orders = [epoch_order(seed, e) for e in range(3)]
    assert orders[0] != orders[1] and orders[1] != orders[2] and orders[0] != orders[2]
    assert epoch_order(seed, 0) == orders[0]
    assert epoch_order((seed + 1) % 2**32, 0) != orders[0]


@given(sampler_args(), st.lists(st.integers(0, 200), min_size=1, max_size=8))
def test_indices_depend_on_the_step_alone_not_on_the_calls_before(args, steps):
    """What resume relies on: a fresh sampler asked for step s answers what a long-lived one did."""
    n, batch, seed, world = args
    rank = world - 1
    long_lived = EpochBatches(n, batch, seed, rank, world)
    forward = {s: long_lived.indices(s) for s in steps}
    backward = {s: long_lived.indices(s) for s in reversed(steps)}
    fresh = {s: EpochBatches(n, batch, seed, rank, world).indices(s) for s in steps}
    assert forward == backward == fresh


@given(sampler_args(max_n=12))
def test_fewer_items_than_the_batch_fills_the_batch_with_every_item(args):
    n, batch, seed, world = args
    if n >= batch:
        return
    for step in (0, 1, 2):
        counts = Counter(global_batch(n, batch, seed, world, step))
        assert len(counts) == n == len(set(range(n)) & set(counts))  # every item is there, none outside [0, n)
        assert sum(counts.values()) == batch
        assert min(counts.values()) >= batch // n and max(counts.values()) <= -(-batch // n)


def test_a_batch_the_processes_cannot_share_equally_is_refused():
    with pytest.raises(ValueError, match="divisible by the number of processes 2"):
        EpochBatches(10, 5, 0, 0, 2)
    with pytest.raises(ValueError, match="divisible"):
        EpochBatches(10, 2, 0, 1, 4)
    assert len(EpochBatches(10, 4, 0, 1, 4).indices(0)) == 1


def test_collate_stacks_the_clips_at_the_indices_in_order():
    x, y = collate(FakeClips(10), [7, 2, 2, 0])
    assert x.tolist() == [[7, 107], [2, 102], [2, 102], [0, 100]]
    assert y.tolist() == [[207, 307], [202, 302], [202, 302], [200, 300]]


@given(st.integers(1, 40), st.integers(1, 12))
def test_sequential_batches_yield_every_clip_once_in_order(n, batch):
    batches = list(sequential_batches(FakeClips(n), batch))
    assert len(batches) == -(-n // batch)
    assert all(x.shape[0] == batch for x, _ in batches[:-1]) and 1 <= batches[-1][0].shape[0] <= batch
    assert torch.cat([x[:, 0] for x, _ in batches]).tolist() == list(range(n))
    assert torch.cat([y[:, 0] for _, y in batches]).tolist() == [200 + i for i in range(n)]

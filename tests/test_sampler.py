"""One epoch permutation behind every training sampler: the batch order each sampler gave before they
shared it (pinned against the loops they had), and exact resume mid-epoch."""
from __future__ import annotations

import torch

from da.data import BatchSampler, Split
from da.data.loader import SEED_BOUND, BatchPlan
from da.data.multi_source import MultiSourceSplit
from da.data.sampler import EpochPermutation, IndexedBatches


def old_epoch_loop(n: int, batch_size: int, generator: torch.Generator, batches: int, seeds: bool = False) -> list:
    """The loop ``BatchSampler``, ``BatchPlan`` and SHOT each wrote: a permutation per epoch, walked in
    slices, the last incomplete slice dropped (``BatchPlan`` then drew a seed per image)."""
    order, pos, out = torch.empty(0, dtype=torch.long), 0, []
    for _ in range(batches):
        if pos + batch_size > len(order):
            order, pos = torch.randperm(n, generator=generator), 0
        index = order[pos : pos + batch_size]
        pos += batch_size
        if seeds:
            out.append(list(zip(index.tolist(), torch.randint(0, SEED_BOUND, (batch_size,), generator=generator).tolist())))
        else:
            out.append(index.tolist())
    return out


def test_the_permutation_gives_the_order_of_the_old_loops():
    for seed, n, batch_size in [(0, 20, 5), (1, 23, 4), (7, 10, 10), (3, 9, 2)]:
        permutation = EpochPermutation(n, batch_size, torch.Generator().manual_seed(seed))
        got = [permutation.next().tolist() for _ in range(17)]
        assert got == old_epoch_loop(n, batch_size, torch.Generator().manual_seed(seed), 17)


def test_every_sampler_keeps_its_old_batch_order():
    split = Split(torch.arange(23).float().view(23, 1), torch.arange(23))
    sampler = BatchSampler(split, 4, torch.Generator().manual_seed(5))
    assert [sampler.next()[1].tolist() for _ in range(12)] == old_epoch_loop(23, 4, torch.Generator().manual_seed(5), 12)
    plan = BatchPlan(23, 4, torch.Generator().manual_seed(6))
    assert [plan.draw() for _ in range(12)] == old_epoch_loop(23, 4, torch.Generator().manual_seed(6), 12, seeds=True)
    batches = IndexedBatches(split, 4, torch.Generator().manual_seed(7), torch.device("cpu"))
    drawn = [batches.next() for _ in range(12)]
    assert [i.tolist() for _, i in drawn] == old_epoch_loop(23, 4, torch.Generator().manual_seed(7), 12)
    assert all(torch.equal(x.view(-1), i.float()) for x, i in drawn), "the images at the indices"


def test_several_sources_keep_their_old_batch_order():
    part = torch.tensor([0] * 9 + [1] * 14)
    split = MultiSourceSplit(torch.arange(23).float().view(23, 1), torch.arange(23), part, ("a", "b"))
    sampler = split.sampler(3, torch.Generator().manual_seed(2))
    got = [sampler.next()[1].tolist() for _ in range(10)]
    # The old sampler: each source's members shuffled once per pass over them, one generator, source 0 first.
    g, members = torch.Generator().manual_seed(2), [torch.arange(9), torch.arange(9, 23)]
    orders, pos, expected = [torch.empty(0, dtype=torch.long)] * 2, [0, 0], []
    for _ in range(10):
        picked = []
        for k, m in enumerate(members):
            if pos[k] + 3 > len(orders[k]):
                orders[k], pos[k] = m[torch.randperm(len(m), generator=g)], 0
            picked += orders[k][pos[k] : pos[k] + 3].tolist()
            pos[k] += 3
        expected.append(picked)
    assert got == expected


def test_a_permutation_resumed_mid_epoch_continues_exactly():
    whole = EpochPermutation(11, 3, torch.Generator().manual_seed(4))
    reference = [whole.next().tolist() for _ in range(9)]
    first = EpochPermutation(11, 3, torch.Generator().manual_seed(4))
    head = [first.next().tolist() for _ in range(4)]
    state = first.state_dict()
    resumed = EpochPermutation(11, 3, torch.Generator().manual_seed(99))
    resumed.load_state_dict(state)
    assert head + [resumed.next().tolist() for _ in range(5)] == reference


def test_epoch_started_marks_the_first_batch_of_each_epoch():
    permutation = EpochPermutation(10, 3, torch.Generator().manual_seed(0))
    started = []
    for _ in range(7):
        permutation.next()
        started.append(permutation.epoch_started)
    assert started == [True, False, False, True, False, False, True]

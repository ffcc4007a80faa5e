"""Training batches drawn by index: one epoch permutation that every sampler walks, and the sampler of
an in-memory split."""
from __future__ import annotations

from typing import Callable, Optional, Protocol

import torch
from torch import Tensor


class InMemorySplit(Protocol):
    """What the sampler reads of a split: its images and labels as tensors. ``da.data.domain.TensorSplit``
    has them and builds its sampler from this module, which therefore does not import it back."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        """The number of images."""


class ImageSource(Protocol):
    """What ``IndexedBatches`` reads of a split (any ``da.data.domain.DataSplit``): its size and its
    images by index."""

    def __len__(self) -> int:
        """The number of images."""

    def images(self, index: Tensor) -> Tensor:
        """The images at ``index``, as evaluation sees them."""


class EpochPermutation:
    """Indices into ``n`` items, ``batch_size`` at a time: each epoch a new permutation drawn from
    ``generator``, walked in slices; the last incomplete slice of an epoch is dropped.

    Every training batch of the loop is drawn through it (in-memory splits, file-backed splits,
    several sources, SHOT's target batches), so one seed gives one order whichever sampler draws.
    ``epoch_started`` says whether the last ``next()`` began a new epoch. ``device``: where the
    indices live (an in-memory split's device, so that indexing never copies them per batch).
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator,
                 device: torch.device | str = "cpu") -> None:
        self.n, self.batch_size, self.generator, self.device = n, batch_size, generator, device
        self.order = torch.empty(0, dtype=torch.long, device=device)
        self.pos = 0
        self.epoch_started = False

    def next(self) -> Tensor:
        """The next ``batch_size`` indices (int64, on ``device``)."""
        self.epoch_started = self.pos + self.batch_size > len(self.order)
        if self.epoch_started:
            self.order = torch.randperm(self.n, generator=self.generator).to(self.device)
            self.pos = 0
        index = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return index

    def state_dict(self) -> dict:
        return {"order": self.order.cpu(), "pos": self.pos, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.order = state["order"].to(self.device)
        self.pos = state["pos"]
        self.generator.set_state(state["generator"])


class BatchSampler:
    """Infinite (x, y) batches of an in-memory split, in epoch permutations (``EpochPermutation``).

    ``transform`` (e.g. ``da.data.augment.RandomAffine``) maps each batch's images before they are
    returned. With ``shard=(rank, world_size)`` (torch.distributed), each step draws a global batch of
    ``batch_size * world_size`` indices, the same on every rank (the generator is seeded alike), and
    returns this rank's slice; the transform runs on the global batch, so that every rank's generator
    draws the same numbers and stays in step.
    """

    def __init__(self, split: InMemorySplit, batch_size: int, generator: torch.Generator,
                 transform: Optional[Callable[[Tensor], Tensor]] = None, shard: tuple[int, int] = (0, 1)) -> None:
        rank, world = shard
        if len(split) < batch_size * world:
            raise ValueError(f"batch size {batch_size * world} exceeds the split's {len(split)} samples")
        self.split = split
        self.batch_size = batch_size
        self.generator = generator
        self.transform = transform
        self.rank, self.world = rank, world
        self.permutation = EpochPermutation(len(split), batch_size * world, generator, split.x.device)

    def next(self) -> tuple[Tensor, Tensor]:
        index = self.permutation.next()
        x, y = self.split.x[index], self.split.y[index]
        if self.transform is not None:
            x = self.transform(x)
        if self.world > 1:
            part = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
            x, y = x[part], y[part]
        return x, y

    def state_dict(self) -> dict:
        return self.permutation.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.permutation.load_state_dict(state)


class IndexedBatches:
    """Infinite (images, indices) batches of any split, in memory or file-backed, in epoch permutations:
    for a stage that keeps state per image, addressed by index (SHOT's pseudo-labels). The images are
    those evaluation sees (``DataSplit.images``), on ``device``; the indices stay on the CPU."""

    def __init__(self, split: ImageSource, batch_size: int, generator: torch.Generator, device: torch.device) -> None:
        self.split, self.batch_size, self.device = split, batch_size, device
        self.permutation = EpochPermutation(len(split), batch_size, generator)

    @property
    def epoch_started(self) -> bool:
        """Whether the last batch began a new epoch."""
        return self.permutation.epoch_started

    def next(self) -> tuple[Tensor, Tensor]:
        index = self.permutation.next()
        return self.split.images(index.to(self.device)), index

    def state_dict(self) -> dict:
        return self.permutation.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.permutation.load_state_dict(state)

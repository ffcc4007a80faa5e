"""Infinite random mini-batches drawn by index from an in-memory split."""
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


class BatchSampler:
    """Shuffles indices each epoch and yields (x, y) batches; drops the last incomplete batch.

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
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def next(self) -> tuple[Tensor, Tensor]:
        size = self.batch_size * self.world
        if self._pos + size > len(self._order):
            self._order = torch.randperm(len(self.split), generator=self.generator).to(self.split.x.device)
            self._pos = 0
        index = self._order[self._pos : self._pos + size]
        self._pos += size
        x, y = self.split.x[index], self.split.y[index]
        if self.transform is not None:
            x = self.transform(x)
        if self.world > 1:
            part = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
            x, y = x[part], y[part]
        return x, y

    def state_dict(self) -> dict:
        return {"order": self._order.cpu(), "pos": self._pos, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self._order = state["order"].to(self.split.x.device)
        self._pos = state["pos"]
        self.generator.set_state(state["generator"])

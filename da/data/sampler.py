"""Infinite random mini-batches drawn by index from an in-memory split."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from da.data.domain import Split


class BatchSampler:
    """Shuffles indices each epoch and yields (x, y) batches; drops the last incomplete batch.

    ``transform`` (e.g. ``da.data.augment.RandomAffine``) maps each batch's images before they are returned.
    """

    def __init__(self, split: Split, batch_size: int, generator: torch.Generator,
                 transform: Optional[Callable[[Tensor], Tensor]] = None) -> None:
        if len(split) < batch_size:
            raise ValueError(f"batch size {batch_size} exceeds the split's {len(split)} samples")
        self.split = split
        self.batch_size = batch_size
        self.generator = generator
        self.transform = transform
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def next(self) -> tuple[Tensor, Tensor]:
        if self._pos + self.batch_size > len(self._order):
            self._order = torch.randperm(len(self.split), generator=self.generator).to(self.split.x.device)
            self._pos = 0
        index = self._order[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        x = self.split.x[index]
        return (self.transform(x) if self.transform is not None else x), self.split.y[index]

    def state_dict(self) -> dict:
        return {"order": self._order.cpu(), "pos": self._pos, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self._order = state["order"].to(self.split.x.device)
        self._pos = state["pos"]
        self.generator.set_state(state["generator"])

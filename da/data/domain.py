"""A domain's splits: what the loop reads of them (``DataSplit``), and the in-memory kind (``TensorSplit``).

The loop never touches a split's storage: it asks for its labels, images by index, ordered batches
for evaluation and a sampler of training batches. Digits live whole in memory as tensors
(``TensorSplit``, the fast path); image folders stream from disk through a file-backed split with the
same methods.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Protocol, runtime_checkable

import torch
from torch import Tensor

from da.data.sampler import BatchSampler


@runtime_checkable
class Sampler(Protocol):
    """Infinite training batches with an exact-resume state."""

    batch_size: int

    def next(self) -> tuple[Tensor, Tensor]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@runtime_checkable
class DataSplit(Protocol):
    """What the loop reads of a split: labels (``-1`` where hidden), images and batches."""

    y: Tensor

    def __len__(self) -> int: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    def images(self, index: Tensor) -> Tensor:
        """The images at ``index``, as the model sees them at evaluation (no augmentation)."""

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Every (images, labels) in order, ``batch_size`` at a time, for evaluation."""

    def subset(self, index: Tensor) -> "DataSplit": ...

    def hide_labels(self) -> "DataSplit":
        """The same images with every label -1: training and selection cannot read them."""

    def to(self, device: torch.device) -> "DataSplit": ...

    def sampler(self, batch_size: int, generator: torch.Generator,
                augment: Optional[Callable[[Tensor], Tensor]] = None, shard: tuple[int, int] = (0, 1)) -> Sampler:
        """Shuffled training batches drawn with ``generator``; ``augment`` maps each batch's images;
        ``shard=(rank, world_size)``: this rank's slice of each global batch of ``batch_size * world_size``."""


@dataclass
class TensorSplit:
    """Images (N, C, H, W) float32, normalised to [-1, 1], and int64 labels (N,), held in memory."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def images(self, index: Tensor) -> Tensor:
        return self.x[index.to(self.x.device)]

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, len(self), batch_size):
            yield self.x[start : start + batch_size], self.y[start : start + batch_size]

    def to(self, device: torch.device) -> "TensorSplit":
        return TensorSplit(self.x.to(device), self.y.to(device))

    def subset(self, index: Tensor) -> "TensorSplit":
        return TensorSplit(self.x[index], self.y[index])

    def hide_labels(self) -> "TensorSplit":
        return TensorSplit(self.x, torch.full_like(self.y, -1))

    def sampler(self, batch_size: int, generator: torch.Generator,
                augment: Optional[Callable[[Tensor], Tensor]] = None, shard: tuple[int, int] = (0, 1)) -> Sampler:
        return BatchSampler(self, batch_size, generator, augment, shard)


#: The in-memory split under its first name (datasets and tests build ``Split(x, y)``).
Split = TensorSplit


@dataclass
class DomainData:
    """The train and test splits of one domain, and its number of classes."""

    name: str
    train: TensorSplit
    test: TensorSplit
    num_classes: int


def to_unit_range(images_uint8: Tensor) -> Tensor:
    """uint8 (N, H, W) or (N, C, H, W) -> float32 (N, C, H, W) in [-1, 1]."""
    x = images_uint8.float().div_(127.5).sub_(1.0)
    return x.unsqueeze(1) if x.dim() == 3 else x

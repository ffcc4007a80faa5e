"""A domain's splits held as in-memory tensors."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Split:
    """Images (N, C, H, W) float32, normalised to [-1, 1], and int64 labels (N,)."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> "Split":
        return Split(self.x.to(device), self.y.to(device))

    def subset(self, index: Tensor) -> "Split":
        return Split(self.x[index], self.y[index])


@dataclass
class DomainData:
    """The train and test splits of one domain, and its number of classes."""

    name: str
    train: Split
    test: Split
    num_classes: int


def to_unit_range(images_uint8: Tensor) -> Tensor:
    """uint8 (N, H, W) or (N, C, H, W) -> float32 (N, C, H, W) in [-1, 1]."""
    x = images_uint8.float().div_(127.5).sub_(1.0)
    return x.unsqueeze(1) if x.dim() == 3 else x

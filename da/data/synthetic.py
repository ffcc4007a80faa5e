"""A small synthetic digits-like pair with a known shift, for tests and smoke runs.

Each class is a fixed random 28x28 pattern; samples add noise. The target domain sees the same
patterns with inverted contrast on half the pixels' scale and a brightness offset, so a
source-only model transfers imperfectly and alignment has something to fix.
"""
from __future__ import annotations

from pathlib import Path

import torch

from da.data.dataset_entry import register_dataset
from da.data.domain import DomainData, Split

NUM_CLASSES = 4
TRAIN, TEST = 256, 128


def _patterns(generator: torch.Generator) -> torch.Tensor:
    coarse = torch.rand(NUM_CLASSES, 1, 7, 7, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(28, 28), mode="bilinear", align_corners=False) * 2 - 1


def _sample(patterns: torch.Tensor, n: int, shift: bool, generator: torch.Generator) -> Split:
    y = torch.arange(n) % NUM_CLASSES
    x = patterns[y] + 0.6 * torch.randn(n, 1, 28, 28, generator=generator)
    if shift:
        x = 0.5 * x + 0.4
    return Split(x.float(), y.long())


@register_dataset("synthetic", num_classes=NUM_CLASSES)
def synthetic(root: Path, download: bool, role: str) -> DomainData:
    """Four noisy class patterns; the 'target' role gets a contrast and brightness shift."""
    patterns = _patterns(torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(1 if role == "source" else 2)
    shift = role == "target"
    return DomainData(
        f"synthetic_{role}",
        _sample(patterns, TRAIN, shift, g),
        _sample(patterns, TEST, shift, g),
        num_classes=NUM_CLASSES,
    )

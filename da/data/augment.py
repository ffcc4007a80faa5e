"""Random affine augmentation of training batches, drawn per image on the batch tensor.

Whole splits live in memory as tensors (DESIGN.md "Speed"), so augmentation works on a batch
at once: one ``affine_grid`` + ``grid_sample`` per batch, on the batch's device, instead of a
per-sample PIL transform. The parameters are drawn from the run's generator, so a seeded run is
reproducible and a resumed run draws what it would have drawn.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


class RandomAffine:
    """Per image: a rotation in +-``rotate`` degrees, a zoom in ``scale`` (> 1 enlarges the
    object), a shift in +-``translate`` of the image side; uniform draws.

    Pixels pulled from outside the image repeat the border (``padding_mode="border"``): for digits
    that is the background, where zero padding would draw a grey frame on [-1, 1] images.
    """

    def __init__(self, rotate: float, scale: Sequence[float], translate: float, generator: torch.Generator) -> None:
        self.rotate = math.radians(rotate)
        self.scale = (float(scale[0]), float(scale[1]))
        self.translate = translate
        self.generator = generator

    def __call__(self, x: Tensor) -> Tensor:
        n, g = len(x), self.generator
        angle = (torch.rand(n, generator=g) * 2 - 1) * self.rotate
        zoom = self.scale[0] + torch.rand(n, generator=g) * (self.scale[1] - self.scale[0])
        # affine_grid maps output to input coordinates in [-1, 1]: a shift of f of the side is 2 f there
        shift = (torch.rand(n, 2, generator=g) * 2 - 1) * (2 * self.translate)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, padding_mode="border", align_corners=False)

"""Strong augmentation of digit batches for self-training: the student's view in FixMatch.

FixMatch (Sohn et al., NeurIPS 2020) trains the student on a strongly augmented view of each
unlabelled image against the label the teacher gives its weakly augmented view; self-ensembling
(French et al., ICLR 2018) showed that heavy augmentation is what makes a mean teacher work on
digits. RandAugment's PIL operations do not apply to whole batch tensors, so this is the subset
that matters for grey digits, drawn per image on the batch tensor like ``da.data.augment``: a
random affine map (rotation, zoom, shift), contrast and brightness jitter, and a cutout square
(DeVries & Taylor 2017) filled with the image's mean. Every draw comes from the generator, so a
seeded run is reproducible and a resumed run draws what it would have drawn.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from da.data.augment import RandomAffine


class StrongAugment:
    """Per image: affine (``rotate`` degrees, ``scale``, ``translate``), contrast factor in ``contrast``,
    brightness shift in +-``brightness``, then a square of side ``cutout`` x image side blanked.

    Images are expected in [-1, 1] (``da.data.domain.to_unit_range``) and are clamped back to it.
    """

    def __init__(self, generator: torch.Generator, rotate: float = 20.0, scale: Sequence[float] = (0.8, 1.2),
                 translate: float = 0.1, contrast: Sequence[float] = (0.5, 1.5), brightness: float = 0.3,
                 cutout: float = 0.35) -> None:
        self.generator = generator
        self.affine = RandomAffine(rotate, scale, translate, generator)
        self.contrast = (float(contrast[0]), float(contrast[1]))
        self.brightness = brightness
        self.cutout = cutout

    def __call__(self, x: Tensor) -> Tensor:
        n, g = len(x), self.generator
        x = self.affine(x)
        shape = (n,) + (1,) * (x.dim() - 1)
        c = self.contrast[0] + torch.rand(n, generator=g) * (self.contrast[1] - self.contrast[0])
        b = (torch.rand(n, generator=g) * 2 - 1) * self.brightness
        mean = x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
        x = (x - mean) * c.view(shape).to(x) + mean + b.view(shape).to(x)
        x = x.clamp(-1.0, 1.0)
        if self.cutout > 0 and x.dim() == 4:
            x = cutout(x, self.cutout, g)
        return x


def cutout(x: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """A square of side ``fraction`` x the image's side, at a uniform centre (it may stick out of the
    image), set to the image's mean; one square per image."""
    n, _, h, w = x.shape
    side_h, side_w = max(1, round(fraction * h)), max(1, round(fraction * w))
    cy = torch.randint(0, h, (n,), generator=generator).to(x.device)
    cx = torch.randint(0, w, (n,), generator=generator).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    top, left = (cy - side_h // 2).view(n, 1, 1), (cx - side_w // 2).view(n, 1, 1)
    inside = (rows >= top) & (rows < top + side_h) & (cols >= left) & (cols < left + side_w)
    fill = x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x)
    return torch.where(inside.unsqueeze(1), fill, x)

"""Random patch masking of image batches: the masked view of masked image consistency (MIC).

Hoyer, Dai, Wang and Van Gool, "MIC: Masked Image Consistency for Context-Enhanced Domain
Adaptation", CVPR 2023 (arXiv:2212.01322). The image is cut into a grid of square blocks of
``block`` pixels; each block is hidden independently with probability ``ratio`` (eq. 1 of the
paper: M = [v > r], v ~ U(0, 1) per block), and a hidden block's pixels are set to 0, as the
authors' ``Masking`` (``cls/dalib/modules/masking.py``: ``img * input_mask``, the mask drawn at
``round(H / block)`` x ``round(W / block)`` and resized to the image, nearest). On our digits,
scaled to [-1, 1], 0 is mid-grey, as it is the mean colour of MIC's normalised images. Draws come
from the run's generator, so a seeded run is reproducible and a resumed run draws what it would have.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from da.errors import DAError


def check_mask(ratio: float, block: int, owner: str) -> None:
    """One line (a ``DAError`` naming ``owner``) unless 0 <= ``ratio`` < 1 and ``block`` >= 1."""
    if isinstance(ratio, bool) or not 0.0 <= float(ratio) < 1.0:
        raise DAError(f"{owner}: mask_ratio must be in [0, 1) (the share of patches hidden; MIC uses 0.7), got {ratio}")
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise DAError(f"{owner}: mask_block must be a positive number of pixels (a patch's side), got {block}")


class PatchMask:
    """Hides each ``block`` x ``block`` patch of an image with probability ``ratio`` (MIC's masking)."""

    def __init__(self, ratio: float, block: int, generator: torch.Generator) -> None:
        check_mask(ratio, block, "PatchMask")
        self.ratio, self.block, self.generator = float(ratio), block, generator

    def keep(self, n: int, h: int, w: int) -> Tensor:
        """The (n, 1, h, w) 0/1 mask of kept pixels, block by block (1: kept)."""
        grid = (n, 1, max(1, round(h / self.block)), max(1, round(w / self.block)))
        kept = (torch.rand(grid, generator=self.generator) > self.ratio).float()
        return F.interpolate(kept, size=(h, w), mode="nearest")

    def __call__(self, x: Tensor) -> Tensor:
        """``x`` (N, C, H, W) with the hidden patches set to 0."""
        n, _, h, w = x.shape
        return x * self.keep(n, h, w).to(x)

"""Multi-kernel maximum mean discrepancy between source and target features.

Long et al., "Learning Transferable Features with Deep Adaptation Networks" (DAN), ICML 2015.
The loss is pytorch-adapt's ``MMDLoss``: Gaussian kernels whose bandwidths are the median
pairwise squared distance (the median heuristic) times ``2**k`` for each k in ``kernel_powers``.
"""
from __future__ import annotations

import torch
from pytorch_adapt.layers import MMDLoss

from da.adapters.base import Adapter
from da.registry import register_adapter


@register_adapter("mmd")
class MMD(Adapter):
    """Multi-kernel Gaussian MMD (DAN, Long et al. 2015), median-heuristic bandwidth."""

    description = "multi-kernel Gaussian MMD between feature batches (DAN, Long 2015)"

    def __init__(self, weight: float = 1.0, kernel_powers: tuple = (-3, -2, -1, 0, 1, 2), quadratic: bool = True) -> None:
        super().__init__()
        self.weight = weight
        scales = torch.tensor([2.0**k for k in kernel_powers])
        self.mmd = MMDLoss(kernel_scales=scales, mmd_type="quadratic" if quadratic else "linear")

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        value = self.mmd(f_s, f_t)
        return self.weight * value, {"mmd": value.detach()}

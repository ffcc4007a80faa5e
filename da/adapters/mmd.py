"""Multi-kernel maximum mean discrepancy between source and target features.

Long et al., "Learning Transferable Features with Deep Adaptation Networks" (DAN), ICML 2015;
estimators from Gretton et al., "A Kernel Two-Sample Test", JMLR 2012.
Gaussian kernels whose bandwidths are the median pairwise squared distance (the median
heuristic) times ``2**k`` for each k in ``kernel_powers``, averaged with equal weights.
"""
from __future__ import annotations

import torch
from torch import Tensor

from da.adapters.base import LAYERS, Adapter, check_choice, layer_pairs
from da.registry import register_adapter

ESTIMATORS = ("biased", "unbiased", "linear")


@register_adapter("mmd")
class MMD(Adapter):
    """Multi-kernel Gaussian MMD (DAN, Long et al. 2015), median-heuristic bandwidth."""

    description = "multi-kernel Gaussian MMD between feature batches (DAN, Long 2015)"

    def __init__(self, weight: float = 1.0, kernel_powers: tuple = (-3, -2, -1, 0, 1, 2),
                 estimator: str = "biased", layer: str = "both") -> None:
        """``estimator``: ``biased`` (V-statistic: >= 0, and 0 exactly for identical batches),
        ``unbiased`` (U-statistic) or ``linear`` (DAN's linear-time estimate); the last two are
        pytorch-adapt's ``MMDLoss`` as it is. ``layer``: align ``features``, ``logits`` or ``both``
        (DAN adapts several layers, up to the classifier's output)."""
        super().__init__()
        check_choice("mmd", "estimator", estimator, ESTIMATORS)
        check_choice("mmd", "layer", layer, LAYERS)
        self.layer = layer
        from pytorch_adapt.layers import MMDLoss  # imported here: it pulls in torchmetrics (seconds)

        self.weight = weight
        self.estimator = estimator
        scales = torch.tensor([2.0**k for k in kernel_powers])
        self.mmd = MMDLoss(kernel_scales=scales, mmd_type="linear" if estimator == "linear" else "quadratic")

    def discrepancy(self, f_s: Tensor | list[Tensor], f_t: Tensor | list[Tensor]) -> Tensor:
        """MMD of two batches; given lists (one tensor per layer), the joint MMD of JAN, whose
        kernel is the product of each layer's multi-kernel (pytorch-adapt reads lists the same way)."""
        if self.estimator != "biased":
            return self.mmd(f_s, f_t)
        from pytorch_adapt.layers import utils

        # pytorch-adapt's distances, median bandwidth and kernel sums; only the averaging differs
        # from its unbiased estimate: diagonals stay in, so identical batches give exactly 0.
        xx, yy, zz, scale = utils.get_mmd_dist_mats(f_s, f_t, self.mmd.dist_func, None)
        joint = isinstance(xx, list)
        k_xx = k_yy = k_zz = 1.0
        for d_xx, d_yy, d_zz, s in zip(xx, yy, zz, scale) if joint else [(xx, yy, zz, scale)]:
            scales = s * self.mmd.kernel_scales.to(s)
            weights = utils.get_default_kernel_weights(scales)
            kernel = lambda d: utils._mmd_quadratic(d, scales, weights)
            k_xx, k_yy, k_zz = k_xx * kernel(d_xx), k_yy * kernel(d_yy), k_zz * kernel(d_zz)
        return k_xx.mean() + k_yy.mean() - 2 * k_zz.mean()

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        value = sum(self.discrepancy(s, t) for s, t in layer_pairs(self.layer, f_s, f_t, logits_s, logits_t))
        return self.weight * value, {"mmd": value.detach()}

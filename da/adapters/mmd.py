"""Multi-kernel maximum mean discrepancy between source and target features.

Long et al., "Learning Transferable Features with Deep Adaptation Networks" (DAN), ICML 2015;
estimators from Gretton et al., "A Kernel Two-Sample Test", JMLR 2012.
Gaussian kernels whose bandwidths are the median pairwise squared distance (the median
heuristic) times ``2**k`` for each k in ``kernel_powers``, averaged with equal weights.

``class_weights: target`` weighs the target images so that the classes the model predicts on the
target occur as often as the labelled classes of the source, as the weighted MMD of Yan et al.,
"Mind the Class Weight Bias: Weighted Maximum Mean Discrepancy for Unsupervised Domain
Adaptation", CVPR 2017, corrects for class priors that differ (which weighs the source instead).
"""
from __future__ import annotations

import torch
from torch import Tensor

from da.adapters.base import LAYERS, Adapter, check_choice, layer_pairs
from da.errors import DAError
from da.registry import register_adapter
from da.config.search_space import log_uniform

ESTIMATORS = ("biased", "unbiased", "linear")
CLASS_WEIGHTS = ("none", "target")


@register_adapter("mmd")
class MMD(Adapter):
    """Multi-kernel Gaussian MMD (DAN, Long et al. 2015), median-heuristic bandwidth."""

    search_space = {"weight": log_uniform(0.1, 10.0)}

    min_batch_size = 2  # the unbiased estimate pairs distinct images

    description = "multi-kernel Gaussian MMD between feature batches (DAN, Long 2015)"

    def __init__(self, weight: float = 1.0, kernel_powers: tuple = (-3, -2, -1, 0, 1, 2),
                 estimator: str = "biased", layer: str = "both", class_weights: str = "none",
                 max_class_weight: float = 2.0, prior_momentum: float = 0.95, num_classes: int = 10) -> None:
        """``estimator``: ``biased`` (V-statistic: >= 0, and 0 exactly for identical batches),
        ``unbiased`` (U-statistic) or ``linear`` (DAN's linear-time estimate); the last two are
        pytorch-adapt's ``MMDLoss`` as it is. ``layer``: align ``features``, ``logits`` or ``both``
        (DAN adapts several layers, up to the classifier's output). ``class_weights: target``: each
        target image weighs its predicted class's source frequency over its target frequency
        (soft: the softmax averages them; clipped to [1/max_class_weight, max_class_weight]); both
        frequencies are running means over batches (``prior_momentum``)."""
        super().__init__()
        check_choice("mmd", "estimator", estimator, ESTIMATORS)
        check_choice("mmd", "layer", layer, LAYERS)
        check_choice("mmd", "class_weights", class_weights, CLASS_WEIGHTS)
        if class_weights != "none" and estimator != "biased":
            raise DAError(f"mmd: class_weights: {class_weights} needs estimator: biased, got {estimator!r}")
        self.layer = layer
        self.class_weights, self.max_class_weight, self.prior_momentum = class_weights, max_class_weight, prior_momentum
        if class_weights != "none":  # only then: checkpoints of unweighted runs keep their keys
            # Running class frequencies: source labels, target predictions (checkpointed with the adapter).
            self.register_buffer("prior_s", torch.full((num_classes,), 1.0 / num_classes))
            self.register_buffer("prior_t", torch.full((num_classes,), 1.0 / num_classes))
        from pytorch_adapt.layers import MMDLoss  # imported here: it pulls in torchmetrics (seconds)

        self.weight = weight
        self.estimator = estimator
        scales = torch.tensor([2.0**k for k in kernel_powers])
        self.mmd = MMDLoss(kernel_scales=scales, mmd_type="linear" if estimator == "linear" else "quadratic")

    def discrepancy(self, f_s: Tensor | list[Tensor], f_t: Tensor | list[Tensor], w_t: Tensor | None = None) -> Tensor:
        """MMD of two batches; given lists (one tensor per layer), the joint MMD of JAN, whose
        kernel is the product of each layer's multi-kernel (pytorch-adapt reads lists the same way).
        ``w_t``: a weight per target row (the biased estimate only); none: equal weights."""
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
        if w_t is None:
            return k_xx.mean() + k_yy.mean() - 2 * k_zz.mean()
        a = w_t / w_t.sum()
        return k_xx.mean() + a @ k_yy @ a - 2 * (k_zz.mean(dim=0) @ a)

    @torch.no_grad()
    def target_weights(self, logits_t: Tensor, y_s: Tensor) -> Tensor:
        """Per target row: source over target class frequency, averaged over its softmax."""
        m = self.prior_momentum
        p_t = logits_t.softmax(dim=1)
        self.prior_s.mul_(m).add_((1 - m) * torch.bincount(y_s, minlength=len(self.prior_s)).to(p_t) / len(y_s))
        self.prior_t.mul_(m).add_((1 - m) * p_t.mean(dim=0))
        ratio = (self.prior_s / self.prior_t.clamp_min(1e-8)).clamp(1 / self.max_class_weight, self.max_class_weight)
        return p_t @ ratio

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        w_t = self.target_weights(logits_t, y_s) if self.class_weights == "target" else None
        value = sum(self.discrepancy(s, t, w_t) for s, t in layer_pairs(self.layer, f_s, f_t, logits_s, logits_t))
        scalars = {"mmd": value.detach()}
        if w_t is not None:
            scalars["target_weight_max"] = w_t.max()
        return self.weight * value, scalars

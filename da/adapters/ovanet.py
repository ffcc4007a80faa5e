"""OVANet: one-vs-all network for universal domain adaptation (Saito & Saenko, ICCV 2021, arXiv:2104.03344).

Beside the closed-set head, one binary classifier per source class says "this class" or "not this
class" (2K outputs, no bias, rows renormalised to unit length before each step, as the authors'
``ResClassifier_MME.weight_norm``). On source images each class's classifier learns its positives,
and only the hardest negative class counts (hard-negative mining: the max over negative classes);
on target images the binary predictions' entropy is minimised (weight 0.1), pushing each target
image to a confident inlier or outlier. A target image is unknown when the binary classifier of its
closed-set prediction says "not this class" (probability > 0.5). No threshold is tuned: the
boundary is learnt per class. The losses are the authors' ``ova_loss`` and ``open_entropy``
(github.com/VisionLearningGroup/OVANet, utils/loss.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from da.adapters.base import Adapter
from da.registry import register_adapter

EPS = 1e-8  # the authors'


def ova_loss(out_open: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
    """(positive, hardest-negative) losses of one-vs-all outputs (N, 2, K): [:, 1] is "this class"."""
    p = F.softmax(out_open, 1)
    positive = F.one_hot(label, out_open.shape[2]).float()
    loss_pos = torch.mean(torch.sum(-torch.log(p[:, 1, :] + EPS) * positive, 1))
    loss_neg = torch.mean(torch.max(-torch.log(p[:, 0, :] + EPS) * (1 - positive), 1)[0])
    return loss_pos, loss_neg


def open_entropy(out_open: Tensor) -> Tensor:
    """Mean entropy of the one-vs-all predictions (N, 2, K)."""
    p = F.softmax(out_open, 1)
    return torch.mean(torch.mean(torch.sum(-p * torch.log(p + EPS), 1), 1))


@register_adapter("ovanet")
class OVANet(Adapter):
    """One-vs-all classifiers with hard-negative mining and open-set entropy minimisation (Saito & Saenko 2021)."""

    description = "open-set / universal: one-vs-all classifiers decide unknown (OVANet, Saito & Saenko 2021)"
    settings = ("open_set", "universal")

    def __init__(self, feature_dim: int, num_classes: int, entropy_weight: float = 0.1, weight: float = 1.0) -> None:
        super().__init__()
        self.num_classes, self.entropy_weight, self.weight = num_classes, entropy_weight, weight
        self.ova = nn.Linear(feature_dim, 2 * num_classes, bias=False)

    def one_vs_all(self, z: Tensor) -> Tensor:
        """(N, 2, K) outputs: [:, 0] "not class k", [:, 1] "class k"."""
        return self.ova(z).view(len(z), 2, -1)

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        with torch.no_grad():  # the authors renormalise the rows before every step
            self.ova.weight.copy_(F.normalize(self.ova.weight, dim=1))
        loss_pos, loss_neg = ova_loss(self.one_vs_all(f_s), y_s)
        source = 0.5 * (loss_pos + loss_neg)
        target = open_entropy(self.one_vs_all(f_t))
        scalars = {"ova_positive": loss_pos.detach(), "ova_negative": loss_neg.detach(), "ova_target_entropy": target.detach()}
        return self.weight * (source + self.entropy_weight * target), scalars

    def unknown(self, z: Tensor, logits: Tensor) -> Tensor:
        p = F.softmax(self.one_vs_all(z), 1)
        predicted = logits[:, : self.num_classes].argmax(1)
        return p[torch.arange(len(z), device=z.device), 0, predicted] > 0.5

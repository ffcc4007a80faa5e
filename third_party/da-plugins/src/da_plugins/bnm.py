"""Batch Nuclear-norm Maximization.

Cui et al., "Towards Discriminability and Diversity: Batch Nuclear-norm Maximization under
Label Insufficient Situations", CVPR 2020 (arXiv:2003.12237).
"""
from __future__ import annotations

from da import Adapter, register_adapter


@register_adapter("bnm")
class BNM(Adapter):
    """Batch Nuclear-norm Maximization (Cui et al., CVPR 2020) on the target predictions.

    The loss is ``-||softmax(logits_t)||_* / B`` for a batch of B target samples: minimising it
    makes predictions confident (discriminability) and spread over many classes (diversity).
    It is negative; its floor is ``-sqrt(min(B, K) / B)`` for K classes, reached by confident
    predictions spread evenly over the classes. pytorch-adapt's ``BNMLoss``.
    """

    description = "batch nuclear-norm maximisation of target predictions (BNM, Cui 2020)"
    gradient_domains = ("target",)

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        from pytorch_adapt.layers import BNMLoss  # imported here: it pulls in torchmetrics (seconds)

        self.weight = weight
        self.bnm = BNMLoss()

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        value = self.bnm(logits_t)
        return self.weight * value, {"bnm": value.detach()}

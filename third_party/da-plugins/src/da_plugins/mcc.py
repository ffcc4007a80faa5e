"""Minimum Class Confusion.

Jin et al., "Minimum Class Confusion for Versatile Domain Adaptation", ECCV 2020 (arXiv:1912.03699).
"""
from __future__ import annotations

from da import Adapter, register_adapter


@register_adapter("mcc")
class MCC(Adapter):
    """Minimum Class Confusion (Jin et al., ECCV 2020) on the target logits.

    The temperature-scaled target predictions give an entropy-weighted class-correlation matrix;
    the loss is its normalised off-diagonal mass, the confusion between classes: 0 when every
    target sample is predicted with certainty and every class is predicted in the batch. Each
    class's row is divided by its total probability mass, so a class (nearly) absent from the batch
    counts as fully confused, and one whose probabilities all underflow to 0 gives NaN (0/0).
    ``temperature`` 2.5 and ``weight`` 1.0 are the paper's and Transfer-Learning-Library's
    defaults. pytorch-adapt's ``MCCLoss``.
    """

    description = "minimum class confusion on target predictions (MCC, Jin 2020)"
    gradient_domains = ("target",)

    def __init__(self, weight: float = 1.0, temperature: float = 2.5) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        from pytorch_adapt.layers import MCCLoss  # imported here: it pulls in torchmetrics (seconds)

        self.weight = weight
        self.mcc = MCCLoss(T=temperature)

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        confusion = self.mcc(logits_t)
        return self.weight * confusion, {"class_confusion": confusion.detach()}

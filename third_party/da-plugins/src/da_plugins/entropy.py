"""Entropy minimisation on the unlabelled target batch.

Grandvalet & Bengio, "Semi-supervised Learning by Entropy Minimization", NIPS 2004 (published 2005).
"""
from __future__ import annotations

from da import Adapter, register_adapter


@register_adapter("entropy")
class Entropy(Adapter):
    """Target entropy minimisation (Grandvalet & Bengio 2005).

    The loss is the mean Shannon entropy (nats) of the target predictions, from ``log K`` for
    uniform predictions down to 0 for certain ones. Alone it can lock in early mistakes or
    collapse onto few classes (see ``im`` for the diversity term that counters the latter), so the
    default ``weight`` is a cautious 0.1. pytorch-adapt's ``EntropyLoss``.
    """

    description = "entropy minimisation of target predictions (Grandvalet & Bengio 2005)"
    gradient_domains = ("target",)

    def __init__(self, weight: float = 0.1) -> None:
        super().__init__()
        from pytorch_adapt.layers import EntropyLoss  # imported here: it pulls in torchmetrics (seconds)

        self.weight = weight
        self.entropy = EntropyLoss()

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        value = self.entropy(logits_t)
        return self.weight * value, {"entropy": value.detach()}

"""Prediction entropy, the quantity test-time methods minimise or filter by."""
from __future__ import annotations

import math

from torch import Tensor


def softmax_entropy(logits: Tensor) -> Tensor:
    """Per-sample entropy of softmax(logits), in nats (TENT's ``softmax_entropy``, Wang et al. 2021)."""
    return -(logits.softmax(1) * logits.log_softmax(1)).sum(1)


def entropy_margin(num_classes: int, fraction: float = 0.4) -> float:
    """EATA's and SAR's reliability threshold: ``fraction`` of the largest entropy, ln C (Niu et al.
    2022, 2023 use 0.4 ln C)."""
    return fraction * math.log(num_classes)

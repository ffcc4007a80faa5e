"""Rules that call a target prediction "unknown" (open-set and universal settings, ``da.data.label_sets``).

A rule reads the head's input ``z`` and its logits and returns a boolean mask: True where the image
belongs to no source class. The model's label for such an image is ``unknown`` (the number of source
classes), whatever the head's argmax (``da.train.model.Model.labels``). A rule is a module whose
threshold is a buffer, so a checkpoint restores it with the weights.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class ConfidenceRule(nn.Module):
    """Unknown when the top softmax probability over the known classes is below ``threshold``: the
    baseline of open-set papers that adds a threshold to a closed-set model (e.g. Saito et al., ECCV
    2018, Table 1's "+ threshold" rows; Hendrycks & Gimpel, ICLR 2017, for the score)."""

    def __init__(self, threshold: float = 0.5, known: int | None = None) -> None:
        super().__init__()
        self.known = known
        self.register_buffer("threshold", torch.tensor(float(threshold)))

    def forward(self, z: Tensor, logits: Tensor) -> Tensor:
        known = logits[:, : self.known] if self.known else logits
        return known.softmax(1).amax(1) < self.threshold


class EntropyRule(nn.Module):
    """Unknown when the prediction's entropy over the known classes, divided by log(classes), exceeds
    ``threshold``: SHOT's open-set rule (Liang et al., ICML 2020, sec. 4.4), whose threshold is the
    midpoint of a 2-means clustering of the target entropies (``fit``)."""

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.tensor(float(threshold)))

    @staticmethod
    def entropy(logits: Tensor, eps: float = 1e-5) -> Tensor:
        p = logits.softmax(1)
        return -(p * torch.log(p + eps)).sum(1) / math.log(logits.shape[1])

    def forward(self, z: Tensor, logits: Tensor) -> Tensor:
        return self.entropy(logits) > self.threshold


def two_means(values: Tensor, iterations: int = 100) -> tuple[Tensor, Tensor]:
    """1-D k-means with k = 2, from the extremes (deterministic): (centres low/high, True where high)."""
    v = values.float().flatten()
    centres = torch.stack([v.min(), v.max()])
    high = v > centres.mean()
    for _ in range(iterations):
        high = (v - centres[1]).abs() < (v - centres[0]).abs()
        new = torch.stack([v[~high].mean() if (~high).any() else centres[0], v[high].mean() if high.any() else centres[1]])
        if torch.equal(new, centres):
            break
        centres = new
    return centres, high


def decide(logits: Tensor, unknown: int | None, mask: Tensor | None) -> Tensor:
    """Labels: the argmax (which is ``unknown`` itself for a head with an unknown column, OSBP's), set
    to ``unknown`` where ``mask`` holds."""
    labels = logits.argmax(1)
    if unknown is not None and mask is not None:
        labels = labels.masked_fill(mask, unknown)
    return labels

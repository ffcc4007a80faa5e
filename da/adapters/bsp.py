"""Batch spectral penalization (BSP).

Chen, Wang, Long and Wang, "Transferability vs. Discriminability: Batch Spectral Penalization for
Adversarial Domain Adaptation", ICML 2019. Adversarial alignment lets a few eigenfeatures with the
largest singular values dominate the batch of features and crowds out the others, which hurts
discriminability; BSP penalises the k largest singular values of each domain's feature batch:

    L_bsp = sum_{i <= k} (sigma_{s,i}^2 + sigma_{t,i}^2)

k = 1 and weight 1e-4 as the paper and Transfer-Learning-Library's ``BatchSpectralPenalizationLoss``
(``tllib/alignment/bsp.py``, ``--trade-off-bsp 0.0001`` in its digits scripts). A loss of its own,
it joins an adversarial adapter in a list: ``adapter: [{name: cdan}, {name: bsp}]`` (its ``weight``
is the trade-off; ``da.adapters.compose``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from da.adapters.base import Adapter
from da.registry import register_adapter


def top_singular_penalty(f: Tensor, k: int) -> Tensor:
    """The sum of the squares of the ``k`` largest singular values of the batch ``f`` (N, F)."""
    return torch.linalg.svdvals(f)[:k].pow(2).sum()


@register_adapter("bsp")
class BSP(Adapter):
    """Penalise the k largest singular values of each domain's features (Chen et al. 2019)."""

    description = "batch spectral penalization: the k largest singular values of each domain's features (Chen 2019)"
    min_batch_size = 2

    def __init__(self, k: int = 1, weight: float = 1e-4) -> None:
        super().__init__()
        if isinstance(k, bool) or k < 1:
            raise ValueError(f"bsp: k must be a positive number of singular values, got {k}")
        self.k, self.weight = k, weight

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        source, target = top_singular_penalty(f_s, self.k), top_singular_penalty(f_t, self.k)
        penalty = source + target
        return self.weight * penalty, {"penalty": penalty.detach(), "source": source.detach(), "target": target.detach()}

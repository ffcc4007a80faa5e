"""SHOT's pseudo-labels and information-maximisation loss (Liang et al., ICML 2020, arXiv:2002.08546).

Pseudo-labels come from a weighted k-means in feature space rather than from the network's own
argmax, which is noisier under domain shift: class centroids are the features averaged with the
softmax probabilities as weights, each image takes the nearest centroid by cosine distance, then
centroids are recomputed from these hard labels and the assignment repeated (``rounds``). As in
the SHOT repository (``obtain_label``), a constant 1 is appended to every feature before it is
L2-normalised.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cosine_assign(features: Tensor, centroids: Tensor, present: Tensor) -> Tensor:
    """Index of the nearest centroid by cosine distance; classes not ``present`` are never chosen."""
    sim = F.normalize(features, dim=1) @ F.normalize(centroids, dim=1).T
    sim = sim.masked_fill(~present.unsqueeze(0), float("-inf"))
    return sim.argmax(1)


@torch.no_grad()
def cluster_pseudo_labels(features: Tensor, probs: Tensor, rounds: int = 1, min_count: int | None = None) -> Tensor:
    """SHOT's pseudo-labels: soft-weighted centroids, nearest by cosine, then ``rounds`` hard refinements.

    ``features`` (N, d), ``probs`` (N, K) softmax outputs of the frozen head; returns int64 (N,).
    ``min_count``: only classes the head predicts more often than that may be assigned (SHOT's
    ``labelset``, ``cls_count > threshold``, which its partial setting relies on); None: every class
    with probability mass.
    """
    f = torch.cat([features.float(), features.new_ones(len(features), 1).float()], 1)
    f = F.normalize(f, dim=1)
    weights = probs.float()
    labels = torch.empty(0)
    counts = torch.bincount(probs.argmax(1), minlength=probs.shape[1])
    for _ in range(rounds + 1):
        mass = weights.sum(0)
        centroids = weights.T @ f / (mass.unsqueeze(1) + 1e-8)
        present = mass > 0 if min_count is None else counts > min_count
        labels = cosine_assign(f, centroids, present)
        weights = F.one_hot(labels, probs.shape[1]).float()
    return labels


def information_maximisation(logits: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """(mean per-sample entropy, entropy of the mean prediction): SHOT minimises the first and
    maximises the second, so each prediction is confident and the batch covers every class."""
    p = logits.softmax(1)
    entropy = -(p * torch.log(p + eps)).sum(1).mean()
    mean = p.mean(0)
    diversity = -(mean * torch.log(mean + eps)).sum()
    return entropy, diversity

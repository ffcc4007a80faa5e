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
def cluster_pseudo_labels(features: Tensor, probs: Tensor, rounds: int = 1) -> Tensor:
    """SHOT's pseudo-labels: soft-weighted centroids, nearest by cosine, then ``rounds`` hard refinements.

    ``features`` (N, d), ``probs`` (N, K) softmax outputs of the frozen head; returns int64 (N,).
    """
    f = torch.cat([features.float(), features.new_ones(len(features), 1).float()], 1)
    f = F.normalize(f, dim=1)
    weights = probs.float()
    labels = torch.empty(0)
    for _ in range(rounds + 1):
        mass = weights.sum(0)
        centroids = weights.T @ f / (mass.unsqueeze(1) + 1e-8)
        labels = cosine_assign(f, centroids, mass > 0)
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

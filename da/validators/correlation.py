"""How well a validator's scores rank checkpoints by target accuracy: Musgrave et al.'s weighted
Spearman correlation ("Benchmarking validation methods for unsupervised domain adaptation", arXiv
2208.07360), and the plain one."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.stats import rankdata

#: Musgrave et al. weight each checkpoint by (its score's rank / the top rank) ** 2: the top of the
#: ranking, where a validator's pick lies, counts most.
POWER = 2.0


def _finite(scores: Sequence[float]) -> np.ndarray:
    """NaN and infinite scores become the lowest finite one (as the authors' code): never preferred."""
    x = np.asarray(scores, dtype=float)
    finite = np.isfinite(x)
    if not finite.any():
        return np.zeros_like(x)
    x[~finite] = x[finite].min()
    return x


def _weighted_ranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Ranks where each item counts its weight (ties share their mean), as the WeightedCorr package."""
    _, inverse, counts = np.unique(rankdata(x), return_inverse=True, return_counts=True)
    mass = np.bincount(inverse, w)
    return (np.cumsum(mass) - mass)[inverse] + ((counts + 1) / 2 * (mass / counts))[inverse]


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    mx, my = np.average(x, weights=w), np.average(y, weights=w)
    cov = np.sum(w * (x - mx) * (y - my))
    norm = math.sqrt(np.sum(w * (x - mx) ** 2) * np.sum(w * (y - my) ** 2))
    return float(cov / norm) if norm > 0 else math.nan


def weighted_spearman(scores: Sequence[float], accuracies: Sequence[float], power: float = POWER) -> float:
    """Musgrave et al.'s weighted Spearman correlation between validator scores and target accuracies.

    Each checkpoint weighs (dense rank of its score / the highest dense rank) ** ``power``; both
    series are ranked with those weights and correlated by a weighted Pearson correlation. 1: the
    validator orders the checkpoints as target accuracy does, most of all at its top; NaN when either
    series is constant. ``power=0`` is the plain Spearman correlation.
    """
    x, y = _finite(scores), np.asarray(accuracies, dtype=float)
    if len(x) < 2:
        return math.nan
    dense = rankdata(x, method="dense").astype(float)
    w = (dense / dense.max()) ** power
    return _weighted_pearson(_weighted_ranks(x, w), _weighted_ranks(y, w), w)


def spearman(scores: Sequence[float], accuracies: Sequence[float]) -> float:
    """The plain Spearman rank correlation (NaN scores ranked lowest)."""
    return weighted_spearman(scores, accuracies, power=0.0)

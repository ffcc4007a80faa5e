"""LAME's Laplacian-regularised maximum likelihood over a batch (Boudiaf et al., "Parameter-free Online
Test-time Adaptation", CVPR 2022; github.com/fiveai/LAME, ``src/adaptation/lame.py``).

For a batch with class probabilities p (N x K) and an affinity W (N x N) between its features, LAME
finds assignments Y minimising

    E(Y) = sum_i [ -<y_i, log p_i> + <y_i, log y_i> ] - lambda sum_ij W_ij <y_i, y_j>

by the concave-convex procedure's fixed point y_i <- softmax(log p_i + lambda sum_j W_ij y_j), from
y = p, until the energy changes by at most 1e-8 of itself (from the third iteration on) or after
``max_steps``. Written from the paper and checked against the reference's code, whose licence (CC
BY-NC-SA 4.0) keeps it out of this repository; the energy is computed as the reference does, with
the pairwise term of the iteration's input. Affinities: ``knn`` (1 for each of the k nearest other
points), ``rbf`` (Gaussian of the distance, sigma the mean distance to the k-th nearest point, the
point itself counted) and ``linear`` (dot products), on L2-normalised features.
"""
from __future__ import annotations

import torch
from torch import Tensor

KERNELS = ("knn", "rbf", "linear")


#: Elements of the differences tensor computed at once (``distances`` works in blocks of rows).
BLOCK = 1 << 24


def distances(x: Tensor) -> Tensor:
    """Euclidean distances between the rows of ``x`` (N x N), as norms of the differences like the
    reference's (bit for bit; the Gram trick of ``cdist`` rounds otherwise), a block of rows at a time."""
    rows = max(1, BLOCK // max(x.numel(), 1))
    return torch.cat([torch.norm(x.unsqueeze(0) - x[i : i + rows].unsqueeze(1), dim=-1, p=2)
                      for i in range(0, len(x), rows)])


def affinity(x: Tensor, kernel: str, knn: int) -> Tensor:
    """The N x N affinity of ``kernel`` between the rows of ``x`` (features already normalised)."""
    n = x.shape[0]
    if kernel == "linear":
        return x @ x.t()
    dist = distances(x)
    if kernel == "rbf":
        sigma = dist.topk(min(knn, n), -1, largest=False).values[:, -1].mean()
        return torch.exp(-dist**2 / (2 * sigma**2))
    neighbours = dist.topk(min(knn + 1, n), -1, largest=False).indices[:, 1:]  # the first is the point itself
    return torch.zeros(n, n, device=x.device, dtype=x.dtype).scatter_(-1, neighbours, 1.0)


def entropy_energy(y: Tensor, unary: Tensor, pairwise: Tensor, bound_lambda: float) -> float:
    """E = sum (unary * y - lambda * pairwise * y + y log y)."""
    return float((unary * y - bound_lambda * pairwise * y + y * torch.log(y.clip(1e-20))).sum())


def laplacian_optimization(unary: Tensor, kernel: Tensor, bound_lambda: float = 1.0,
                           max_steps: int = 100) -> tuple[Tensor, int]:
    """Assignments Y (N x K) for ``unary`` = -log p and the affinity ``kernel``; and the iterations run."""
    old = float("inf")
    y = (-unary).softmax(-1)
    for i in range(max_steps):
        pairwise = bound_lambda * kernel.matmul(y)
        y = (-unary + pairwise).softmax(-1)
        energy = entropy_energy(y, unary, pairwise, bound_lambda)
        if i > 1 and abs(energy - old) <= 1e-8 * abs(old):
            return y, i + 1
        old = energy
    return y, max_steps

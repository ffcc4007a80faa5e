"""The diagonal Fisher information of some parameters, with the model's own predictions as labels:
the importance weights of an elastic anchor (EWC, Kirkpatrick et al., PNAS 2017) that EATA (Niu et
al., ICML 2022, Eqn. 9) keeps the adapted parameters near the source ones with.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def diagonal_fisher(params: list[nn.Parameter], forward: Callable[[Tensor], Tensor],
                    batches: Iterable[Tensor]) -> list[Tensor]:
    """Per parameter, the mean over ``batches`` of the squared gradient of the batch's mean
    cross-entropy to its own arg-max predictions (EATA's main.py: ``(grad ** 2)`` summed over the
    loader's batches, divided by their number). Gradients stay out of the parameters' ``.grad``."""
    sums = [torch.zeros_like(p) for p in params]
    count = 0
    for x in batches:
        logits = forward(x)
        loss = F.cross_entropy(logits, logits.detach().argmax(1))
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for total, g in zip(sums, grads):
            if g is not None:
                total.add_(g.detach() ** 2)
        count += 1
    return [total / max(count, 1) for total in sums]


def anchor_penalty(params: list[nn.Parameter], fisher: list[Tensor], anchor: list[Tensor], weight: float) -> Tensor:
    """weight * sum_i F_i (theta_i - theta0_i)^2 over every parameter (EATA's Eqn. 9, summed in its order)."""
    total = torch.zeros((), device=params[0].device) if params else torch.zeros(())
    for p, f, p0 in zip(params, fisher, anchor):
        total = total + weight * (f * (p - p0) ** 2).sum()
    return total

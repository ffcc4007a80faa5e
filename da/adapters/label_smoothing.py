"""Environment label smoothing (ELS) of a domain discriminator's targets.

Zhang et al., "Free Lunch for Domain Adversarial Training: Environment Label Smoothing", ICLR 2023.
A discriminator that tells source (1) from target (0) learns soft targets instead: ``1 - eps`` for
source and ``eps`` for target, as the authors' code does
(github.com/yfzhang114/Environment-Label-Smoothing, ``Domain_Adaptation/dalib/adaptation/cdan.py``:
``d_label = cat(ones * (1 - eps), ones * eps)``). A discriminator that cannot become
over-confident gives the features a gradient that neither vanishes nor explodes, which the paper
shows stabilises adversarial training. ``eps`` lies in [0, 0.5]: 0 is the hard labels, 0.5 makes
the domains indistinguishable targets.
"""
from __future__ import annotations

import torch
from torch import Tensor

#: The largest smoothing: both targets 0.5.
MAX_SMOOTHING = 0.5


def check_label_smoothing(owner: str, eps: float) -> None:
    """A ``ValueError`` (one line, naming ``owner``) unless ``eps`` is in [0, 0.5]."""
    if isinstance(eps, bool) or not 0.0 <= float(eps) <= MAX_SMOOTHING:
        raise ValueError(f"{owner}: label_smoothing must be in [0, {MAX_SMOOTHING}] (environment label smoothing, "
                         f"Zhang et al. 2023; e.g. 0.1), got {eps}")


def domain_targets(like: Tensor, n_source: int, n_target: int, eps: float = 0.0) -> Tensor:
    """The discriminator's targets for ``n_source`` source then ``n_target`` target rows: ``1 - eps``
    and ``eps`` (the hard 1 / 0 when ``eps`` is 0), in ``like``'s dtype and device."""
    return torch.cat([like.new_full((n_source,), 1.0 - eps), like.new_full((n_target,), eps)])

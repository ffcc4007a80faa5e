"""The source + target forward and loss that every stage training on both domains shares (``adapt``,
``self_train``).

One extractor forward over ``cat(x_s, x_t, ...)``, then split (as Transfer-Learning-Library does), so
batch-norm statistics see both domains; each part through the model's ``transform`` slot when a
stage filled it; one head forward over them all. The adapter's loss runs in float32 outside autocast
(kernels, covariances and log-softmax need it), over every rank's rows when the adapter asks for the
global batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from da.models.domain_norm import routed
from da.train.distributed import Dist, gather
from da.train.model import Model
from da.train.precision import float32_outside_autocast


@dataclass
class Alignment:
    """The adapter's loss on one step's source and target rows, and its scalars (``adapter/<name>``)."""

    loss: Tensor
    scalars: dict[str, Tensor] = field(default_factory=dict)


def joint_forward(m: Model, batches: Sequence[Tensor], domains: Sequence[str], source_rows: int,
                  extractor_grad: bool = True, reversed_parts: Sequence[int] = ()) -> tuple[list[Tensor], list[Tensor]]:
    """Features and logits of each batch (``domains[i]``: the domain of ``batches[i]``); per-domain
    batch norm normalises the first ``source_rows`` rows as source. A domain with an encoder of its
    own (the model's ``encoders`` slot) goes through it instead of the shared extractor. The head
    reads the batches ``reversed_parts`` through a gradient reversal (OSBP's target batch)."""
    sizes = [len(x) for x in batches]
    with torch.set_grad_enabled(extractor_grad and torch.is_grad_enabled()), routed(m.domain_norms, split=source_rows):
        if any(d in m.encoders for d in domains):
            features = [m.encode(x, d) for x, d in zip(batches, domains)]
        else:
            features = list(m.features(torch.cat(list(batches))).split(sizes))
    z = [m.adapt_features(f, d) for f, d in zip(features, domains)]
    z = [reverse_gradient(v) if i in reversed_parts else v for i, v in enumerate(z)]
    logits = list(m.head(torch.cat(z)).split(sizes))
    return features, logits


def reverse_gradient(x: Tensor) -> Tensor:
    """Identity forward, negated gradient backward: pytorch-adapt's ``GradientReversal`` at weight 1
    (Ganin & Lempitsky 2015's layer)."""
    from pytorch_adapt.layers import GradientReversal  # imported here: it pulls in torchmetrics (seconds)

    return GradientReversal(weight=1.0)(x)


def alignment(m: Model, dist: Dist, device_type: str, f_s: Tensor, f_t: Tensor, logits_s: Tensor, logits_t: Tensor,
              y_s: Tensor, progress: float) -> Alignment:
    """``m.adapter.loss`` on float32 inputs (gathered over ranks for a ``global_batch`` adapter)."""
    with float32_outside_autocast(device_type):
        inputs = (f_s.float(), f_t.float(), logits_s.float(), logits_t.float(), y_s)
        if m.adapter.global_batch:
            inputs = gather(dist, *inputs)
        loss, scalars = m.adapter.loss(inputs[0], inputs[1], logits_s=inputs[2], logits_t=inputs[3], y_s=inputs[4],
                                       progress=progress)
    return Alignment(loss, scalars)

"""Domain-specific batch normalisation: one set of batch-norm statistics and affine parameters per
domain, every other weight shared.

Chang et al., "Domain-Specific Batch Normalization for Unsupervised Domain Adaptation", CVPR 2019
(after AdaBN: Li et al., "Revisiting Batch Normalization for Practical Domain Adaptation", 2016).
``train.batch_norm: per_domain`` swaps each batch-norm layer of the extractor for a
:class:`DomainBatchNorm`. In the adaptation stage the source rows of a training batch are
normalised with the source's batch statistics and the target rows with the target's, and each
evaluation reads the statistics of the domain it evaluates. The target's copy starts from the
pretrained source layer when adaptation starts.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

DOMAINS = ("source", "target")


class DomainBatchNorm(nn.Module):
    """A batch-norm layer for each domain (``source``, ``target``) in place of one."""

    def __init__(self, bn: _BatchNorm) -> None:
        super().__init__()
        self.source = bn
        self.target = copy.deepcopy(bn)
        #: Training: how many leading rows of the batch are source rows (the rest are target);
        #: None: the whole batch is of ``domain``.
        self.split: int | None = None
        self.domain = "source"

    def forward(self, x: Tensor) -> Tensor:
        if self.split is None or not self.training:
            return getattr(self, self.domain)(x)
        if self.split <= 0:
            return self.target(x)
        if self.split >= len(x):
            return self.source(x)
        return torch.cat([self.source(x[: self.split]), self.target(x[self.split :])])

    def reset_target(self) -> None:
        """The target's affine parameters := the source's (as pretraining left them); its statistics reset."""
        self.target.load_state_dict(self.source.state_dict())
        self.target.reset_running_stats()

    def _load_from_state_dict(self, state: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # A checkpoint of a model with one batch norm here: both domains' layers load its weights.
        plain = [k for k in list(state) if k.startswith(prefix) and "." not in k[len(prefix):]]
        for key in plain:
            value = state.pop(key)
            name = key[len(prefix):]
            for domain in DOMAINS:
                state.setdefault(f"{prefix}{domain}.{name}", value.clone())
        super()._load_from_state_dict(state, prefix, *args, **kwargs)


def per_domain(module: nn.Module) -> list[DomainBatchNorm]:
    """Swap every batch-norm layer inside ``module`` for a :class:`DomainBatchNorm`; returns them."""
    swapped = []
    for name, child in list(module.named_children()):
        if isinstance(child, _BatchNorm):
            wrapper = DomainBatchNorm(child)
            setattr(module, name, wrapper)
            swapped.append(wrapper)
        elif not isinstance(child, DomainBatchNorm):
            swapped.extend(per_domain(child))
    return swapped


def shared_state(state: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """``state`` for a ``model`` with one batch norm per layer: of a per-domain layer's weights,
    the source's are kept (the ones pretraining trained), the target's dropped."""
    own = set(model.state_dict())
    out = {}
    for key, value in state.items():
        head, sep, tail = key.rpartition(".source.")
        if sep and f"{head}.{tail}" in own:
            out[f"{head}.{tail}"] = value
        elif ".target." not in key or key in own:
            out[key] = value
    return out


@contextmanager
def routed(layers: list[DomainBatchNorm], domain: str | None = None, split: int | None = None) -> Iterator[None]:
    """Inside: the layers normalise as ``domain`` (evaluation), or split a training batch after
    ``split`` source rows; outside, as they did before (the source's layer, outside any ``routed``)."""
    before = [(layer.domain, layer.split) for layer in layers]
    for layer in layers:
        layer.domain, layer.split = domain or "source", split
    try:
        yield
    finally:
        for layer, (old_domain, old_split) in zip(layers, before):
            layer.domain, layer.split = old_domain, old_split


@torch.no_grad()
def start_target(layers: list[DomainBatchNorm], features: Callable[[Tensor], Tensor], target_batches: Iterable[Tensor]) -> None:
    """Each layer's target copy := its source layer, with the target's own statistics: the mean and
    variance of the target images (``target_batches``) that reach it (AdaBN, Li et al. 2016).

    ``features`` runs the extractor; the caller puts it in eval mode, so that only these statistics
    change (dropout off, every other layer as trained).
    """
    if not layers:
        return
    for layer in layers:
        layer.reset_target()
        layer.target.momentum = None  # a cumulative average over the batches below
        layer.target.train()
    try:
        with routed(layers, "target"):
            for x in target_batches:
                features(x)
    finally:
        for layer in layers:
            layer.target.momentum = layer.source.momentum
            layer.target.train(layer.source.training)

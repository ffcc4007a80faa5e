"""One adapter per source, each aligning its source with the target (multi-source adaptation).

With ``data.source: [a, b, c]`` a training batch holds the same number of images from each source,
in source order (``da.data.multi_source``). ``train.multi_source: per_source`` (the default)
builds one copy of the configured adapter per source and averages their losses, each computed on
its source's rows against the whole target batch: for DANN one domain discriminator per source,
as MDAN does (Zhao et al., NeurIPS 2018, "Adversarial multiple source domain adaptation"; its
soft-max variant weighs sources by their losses, this one averages them), the per-source
alignment M3SDA also performs (Peng et al., ICCV 2019). ``pooled`` uses one adapter on all source
rows at once (the "source combine" baseline). A method trained by a stage of its own (adda, mcd,
subspace) has no loss to split; its stage reads the pooled sources.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from da.adapters.base import Adapter


class PerSource(Adapter):
    """The mean of ``adapters[k].loss`` on source k's rows against the target; scalars averaged."""

    description = "one adapter per source, each against the target, losses averaged (train.multi_source: per_source)"

    def __init__(self, sources: list[str], build: Callable[[], Adapter]) -> None:
        super().__init__()
        self.sources = list(sources)
        self.copies = nn.ModuleList([build() for _ in sources])
        first = self.copies[0]
        self.aligns_by_gradient = first.aligns_by_gradient
        self.gradient_domains = first.gradient_domains

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        k = len(self.copies)
        if len(f_s) % k:
            raise ValueError(f"{len(f_s)} source rows do not split into {k} equal per-source batches")
        total = f_s.new_zeros(())
        scalars: dict[str, Tensor] = {}
        for adapter, f, logits, y in zip(self.copies, f_s.chunk(k), logits_s.chunk(k), y_s.chunk(k)):
            value, part = adapter.loss(f, f_t, logits_s=logits, logits_t=logits_t, y_s=y, progress=progress)
            total = total + value / k
            for name, v in part.items():
                scalars[name] = scalars.get(name, 0) + torch.as_tensor(v, dtype=torch.float32) / k
        return total, scalars


def per_source(sources: list[str] | str, mode: str, build: Callable[[], Adapter]) -> Adapter:
    """The adapter a run trains: ``build()``, or a ``PerSource`` of one copy per source when
    ``data.source`` lists several and ``train.multi_source`` is per_source."""
    adapter = build()
    if not isinstance(sources, list) or len(sources) < 2 or mode != "per_source" or not adapter.aligns_by_gradient:
        return adapter  # one source, pooled, or no alignment loss (source_only): nothing to split
    return PerSource(sources, build)

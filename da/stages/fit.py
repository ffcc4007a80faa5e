"""The closed-form fit: adapters such as subspace alignment (Fernando et al. 2013) are fitted on
features of the pretrained extractor, then get the head they need."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from da.domains import Domains
from da.models.domain_norm import routed
from da.registry import register_stage
from da.stages.base import Stage
from da.train.model import batched

if TYPE_CHECKING:
    from da.train.run import StageContext


def fit_draw(domains: Domains, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """The source and target train indices (``n`` of each, seeded) a closed-form adapter is fitted on."""
    g = torch.Generator().manual_seed(seed)
    pick = lambda split: torch.randperm(len(split), generator=g)[:n]
    return pick(domains.source_train), pick(domains.target_train)


@register_stage("fit")
class Fit(Stage):
    """Fit a closed-form adapter on ``train.fit_samples`` extractor features per domain (no steps)."""

    label = "fit"
    evaluates = False
    timed = False
    checkpoint_at_start = False

    def begin(self, ctx: "StageContext") -> None:
        run = ctx.run
        d, m = run.domains, run.model
        run.start_target_norms()
        source, target = fit_draw(d, run.config.train.fit_samples, run.config.seed)
        was_training = m.extractor.training
        m.extractor.eval()
        with torch.no_grad():  # images loaded a slice at a time: a file-backed split never sits whole in memory
            with routed(m.domain_norms, "target"):
                target_features = batched(lambda i: m.features(d.target_train.images(i)), target)
            m.adapter.fit(batched(lambda i: m.features(d.source_train.images(i)), source), target_features,
                          y_s=d.source_train.y[source.to(d.source_train.y.device)])
        m.extractor.train(was_training)
        m.head = m.adapter.init_head(m.head)
        m.head_fitted = True

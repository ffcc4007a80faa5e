"""Adversarial Discriminative Domain Adaptation (Tzeng et al., CVPR 2017, arXiv:1702.05464).

ADDA separates the domains' encoders. After source training, the *target* encoder starts as a
copy of the source encoder; the source encoder and the classifier stay fixed. Each step then
alternates two updates with the standard GAN loss (inverted labels, not gradient reversal):

- the discriminator learns to tell source features (fixed source encoder) from target features;
- the target encoder learns to make its features pass for source ones.

Target images are classified by the target encoder and the source classifier. In this loop the
model's extractor becomes the target encoder; the adapter keeps the frozen source encoder.
"""
from __future__ import annotations

import copy
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from da.adapters.base import Adapter, binary_accuracy
from da.adapters.dann import domain_discriminator
from da.registry import register_adapter


@register_adapter("adda")
class ADDA(Adapter):
    """Separate target encoder, initialised from the source one, trained against a discriminator (Tzeng 2017)."""

    description = "adversarial discriminative: target encoder vs discriminator, alternating (Tzeng 2017)"
    aligns_by_gradient = False  # it aligns through its own update, not through ``loss``

    def __init__(self, feature_dim: int, hidden: int = 500) -> None:
        super().__init__()
        self.discriminator = domain_discriminator(feature_dim, hidden)
        self.source_encoder: nn.Module | None = None

    def begin(self, model: Any) -> None:
        """Before the first adaptation step: the fixed source encoder is a copy of the source-trained
        extractor, which itself goes on as the target encoder (so the two start equal)."""
        if self.source_encoder is None:
            self.source_encoder = copy.deepcopy(model.features_module()).requires_grad_(False).eval()

    def optimizers(self, model: Any) -> dict[str, list[nn.Parameter]]:
        return {"discriminator": list(self.discriminator.parameters()),
                "encoder": [p for p in model.extractor.parameters() if p.requires_grad]}

    def update(self, model: Any, batch: dict[str, tuple[Tensor, Tensor]], progress: float) -> Iterator[Any]:
        from da.train.update import Update

        (x_s, _), (x_t, _) = batch["source"], batch["target"]
        self.source_encoder.eval()
        with torch.no_grad():
            f_s = self.source_encoder(x_s)
            f_t = model.features(x_t)
        scores = self.discriminator(torch.cat([f_s, f_t])).squeeze(1)
        labels = torch.cat([scores.new_ones(len(f_s)), scores.new_zeros(len(f_t))])
        d_loss = F.binary_cross_entropy_with_logits(scores, labels)
        yield Update(d_loss, "discriminator", {"discriminator_loss": d_loss.detach(),
                                               "discriminator_acc": binary_accuracy(scores.detach(), labels)})
        scores_t = self.discriminator(model.features(x_t)).squeeze(1)
        g_loss = F.binary_cross_entropy_with_logits(scores_t, torch.ones_like(scores_t))  # inverted labels
        yield Update(g_loss, "encoder", {"encoder_loss": g_loss.detach()})

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return super().state_dict(*args, **kwargs)

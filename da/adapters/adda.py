"""Adversarial Discriminative Domain Adaptation (Tzeng et al., CVPR 2017, arXiv:1702.05464).

ADDA gives each domain its own encoder. After source training, the *target* encoder starts as a
copy of the source encoder; the source encoder and the classifier stay fixed. Each step then
alternates two updates with the standard GAN loss (inverted labels, not gradient reversal):

- the discriminator learns to tell source features (fixed source encoder) from target features;
- the target encoder learns to make its features pass for source ones.

Target images are then classified by the target encoder and the source classifier. In this loop the
model's extractor is the source encoder (it stays fixed: no optimizer holds it); the adapter owns the
target encoder, which ``encoder("target")`` hands to evaluation in place of the extractor.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from da.adapters.base import Adapter, Domain, ParamGroup, Update, binary_accuracy
from da.adapters.dann import domain_discriminator
from da.registry import register_adapter

if TYPE_CHECKING:
    from da.train.model import Model

TARGET_ENCODER = "target_encoder."


@register_adapter("adda")
class ADDA(Adapter):
    """Separate target encoder, initialised from the source one, trained against a discriminator (Tzeng 2017)."""

    description = "adversarial discriminative: own target encoder vs a discriminator, alternating (Tzeng 2017)"
    aligns_by_gradient = False  # it aligns through its own update, not through ``loss``

    def __init__(self, feature_dim: int, hidden: int = 500, discriminator_lr_mult: float = 1.0) -> None:
        super().__init__()
        self.discriminator = domain_discriminator(feature_dim, hidden, batch_norm=False)  # the paper's: no batch norm
        self.discriminator_lr_mult = discriminator_lr_mult
        self.target_encoder: nn.Module | None = None
        self._pending: dict[str, Tensor] = {}  # target-encoder weights loaded before the encoder exists

    def start(self, model: "Model") -> None:
        """The target encoder: a copy of the source-trained extractor (then any weights a checkpoint gave it)."""
        if self.target_encoder is None:
            self.target_encoder = copy.deepcopy(model.extractor).requires_grad_(True)
            if self._pending:
                self.target_encoder.load_state_dict(self._pending)
                self._pending = {}

    def encoder(self, domain: Domain) -> nn.Module | None:
        return self.target_encoder if domain == "target" else None

    def optimizers(self, model: "Model") -> dict[str, list[ParamGroup]]:
        self.start(model)
        model.extractor.requires_grad_(False)  # the source encoder stays as source training left it
        model.head.requires_grad_(False)       # and so does the classifier
        return {"discriminator": [ParamGroup("discriminator", self.discriminator, self.discriminator_lr_mult)],
                "encoder": [ParamGroup("target_encoder", self.target_encoder)]}

    def update(self, model: "Model", batch: dict[str, tuple[Tensor, Tensor]], *, progress: float,
               log: bool) -> Iterator[Update]:
        (x_s, _), (x_t, _) = batch["source"], batch["target"]
        model.extractor.eval()  # the fixed source encoder: no dropout, its batch-norm statistics kept
        with torch.no_grad():
            f_s = model.extractor(x_s)
        f_t = self.target_encoder(x_t)
        scores = self.discriminator(torch.cat([f_s, f_t.detach()])).squeeze(1)
        labels = torch.cat([scores.new_ones(len(f_s)), scores.new_zeros(len(f_t))])
        d_loss = F.binary_cross_entropy_with_logits(scores, labels)
        yield Update(d_loss, "discriminator", {"adapter/discriminator_loss": d_loss.detach(),
                                               "adapter/discriminator_acc": binary_accuracy(scores.detach(), labels)}
                     if log else {})
        scores_t = self.discriminator(f_t).squeeze(1)
        g_loss = F.binary_cross_entropy_with_logits(scores_t, torch.ones_like(scores_t))  # inverted labels
        yield Update(g_loss, "encoder", {"loss/total": g_loss.detach(), "adapter/encoder_loss": g_loss.detach()}
                     if log else {})

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # A checkpoint taken during adaptation holds the target encoder; before ``start`` built it,
        # keep its weights for ``start``.
        if self.target_encoder is None:
            key = prefix + TARGET_ENCODER
            self._pending = {k[len(key):]: state_dict.pop(k) for k in list(state_dict) if k.startswith(key)}
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

"""Adversarial Discriminative Domain Adaptation (Tzeng et al., CVPR 2017, arXiv:1702.05464).

ADDA gives each domain its own encoder. After source training, the *target* encoder starts as a
copy of the source encoder; the source encoder and the classifier stay fixed. Each step then
alternates two updates with the standard GAN loss (inverted labels, not gradient reversal):

- the discriminator learns to tell source features (fixed source encoder) from target features;
- the target encoder learns to make its features pass for source ones.

Target images are then classified by the target encoder and the source classifier. Here the model's
extractor is the source encoder (no optimizer holds it); the stage fills the model's ``encoders``
slot with the target encoder, which evaluation reads for target images. Both encoders run in
training mode (dropout, batch statistics of their own batch), so that the discriminator can tell
them apart only by domain, never by mode; the source encoder's batch-norm running statistics are
kept as source training left them. The discriminator is the paper's 500-500 MLP without batch
norm: the encoder step scores target batches alone, which a batch norm would centre on their own mean.
``label_smoothing`` softens the discriminator's targets in its own step (environment label smoothing,
Zhang et al., ICLR 2023; ``da.adapters.label_smoothing``); the encoder's inverted labels stay hard.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from da.adapters.base import binary_accuracy
from da.adapters.dann import domain_discriminator
from da.adapters.label_smoothing import check_label_smoothing, domain_targets
from da.registry import register_stage
from da.stages.adapt import Adapt
from da.stages.base import ParamGroup, Update
from da.train.run import Run, StageContext



@contextmanager
def frozen_statistics(module: nn.Module) -> Iterator[None]:
    """Batch norm in training mode normalises with the batch's statistics but leaves its running
    statistics (and batch count) as they were."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


@register_stage("adda")
class ADDA(Adapt):
    """Separate target encoder, initialised from the source one, trained against a discriminator (Tzeng 2017)."""

    label = "ADDA"
    description = "ADDA: own target encoder vs a discriminator, alternating (Tzeng 2017)"
    fills_slots = ("encoders",)
    shown = {"loss": "loss/total"}

    def __init__(self, hidden: int = 500, discriminator_lr_mult: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        check_label_smoothing("stage adda", label_smoothing)
        self.hidden, self.discriminator_lr_mult = hidden, discriminator_lr_mult
        self.label_smoothing = float(label_smoothing)
        self.discriminator: nn.Module | None = None

    def fill_slots(self, run: "Run", fresh: bool) -> None:
        """The target encoder: a copy of the source-trained extractor (a checkpoint's weights follow on resume)."""
        run.model.encoders["target"] = copy.deepcopy(run.model.extractor).requires_grad_(True)

    def optimizers(self, run: "Run", done: int) -> dict[str, list[ParamGroup]]:
        if self.discriminator is None:
            width = run.model.extractor.out_features
            self.discriminator = domain_discriminator(width, self.hidden, batch_norm=False).to(run.device)
        return {"discriminator": [ParamGroup("discriminator", self.discriminator, self.discriminator_lr_mult)],
                "encoder": [ParamGroup("target_encoder", run.model.encoders["target"])]}

    def owned(self) -> dict[str, nn.Module]:
        return {"discriminator": self.discriminator}

    def _train_modes(self, run: "Run") -> None:
        run.model.extractor.train()
        run.model.encoders["target"].train()
        self.discriminator.train()

    def images_per_step(self, run: "Run") -> int:
        return 2 * run.config.train.batch_size

    def step(self, ctx: "StageContext", step: int, batch: dict[str, tuple[Tensor, Tensor]], log: bool) -> Iterator[Update]:
        m = ctx.run.model
        (x_s, _), (x_t, _) = batch["source"], batch["target"]
        with torch.no_grad(), frozen_statistics(m.extractor):
            f_s = m.features(x_s)
        f_t = m.encoders["target"](x_t)
        scores = self.discriminator(torch.cat([f_s, f_t.detach()])).squeeze(1)
        labels = domain_targets(scores, len(f_s), len(f_t), self.label_smoothing)
        d_loss = F.binary_cross_entropy_with_logits(scores, labels)
        yield Update(d_loss, "discriminator", {"adapter/discriminator_loss": d_loss.detach(),
                                               "adapter/discriminator_acc": binary_accuracy(scores.detach(),
                                                                                            (labels > 0.5).float())}
                     if log else {})
        scores_t = self.discriminator(f_t).squeeze(1)
        g_loss = F.binary_cross_entropy_with_logits(scores_t, torch.ones_like(scores_t))  # inverted labels
        yield Update(g_loss, "encoder", {"loss/total": g_loss.detach(), "adapter/encoder_loss": g_loss.detach()}
                     if log else {})

    def state_dict(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.discriminator.load_state_dict(state["discriminator"])

"""Domain-adversarial training with a gradient reversal layer.

Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016 (arXiv:1505.07818).
``label_smoothing`` softens the discriminator's targets (environment label smoothing, Zhang et al.,
ICLR 2023; ``da.adapters.label_smoothing``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from da.adapters.base import Adapter, binary_accuracy
from da.adapters.class_weights import ClassWeighting
from da.adapters.label_smoothing import check_label_smoothing, domain_targets
from da.registry import register_adapter
from da.config.search_space import choice, log_uniform


def dann_schedule(progress: float, gamma: float = 10.0) -> float:
    """Reversal weight 2 / (1 + exp(-gamma p)) - 1 that ramps 0 -> 1 (Ganin 2016, sec. 5.2.2)."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def domain_discriminator(feature_dim: int, hidden: int, batch_norm: bool = True) -> nn.Sequential:
    """A two-hidden-layer MLP that scores 'is source' (one logit per sample); 500-500 as in ADDA (Tzeng 2017).

    ``batch_norm`` (Transfer-Learning-Library's DomainDiscriminator) suits a discriminator that always
    sees both domains in one batch, as DANN's does; ADDA's, which scores target batches alone in its
    encoder step, has none (a batch norm would centre the target features on their own mean there)."""
    norm = (lambda: nn.BatchNorm1d(hidden)) if batch_norm else nn.Identity
    return nn.Sequential(
        nn.Linear(feature_dim, hidden),
        norm(),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        norm(),
        nn.ReLU(),
        nn.Linear(hidden, 1),
    )


@register_adapter("dann")
class DANN(ClassWeighting, Adapter):
    """Domain-adversarial alignment through gradient reversal (Ganin et al. 2016)."""

    #: DomainBed's DANN range for the loss weight (10^U(-2, 2)), narrowed to a decade each side
    search_space = {"weight": log_uniform(0.1, 10.0), "hidden": choice([256, 500, 1024])}

    description = "domain-adversarial: discriminator behind a gradient reversal layer (Ganin 2016)"

    def __init__(
        self,
        feature_dim: int,
        num_classes: int = 0,
        hidden: int = 500,
        weight: float = 1.0,
        gamma: float = 10.0,
        class_weights: bool = False,
        class_temperature: float = 0.1,
        label_smoothing: float = 0.0,  # ELS (Zhang et al. 2023): targets 1 - eps (source) and eps (target)
    ) -> None:
        super().__init__()
        check_label_smoothing("dann", label_smoothing)
        self.weight = weight
        self.gamma = gamma
        self.init_class_weights(class_weights, num_classes, class_temperature)  # PADA's, for the partial setting
        self.label_smoothing = float(label_smoothing)
        from pytorch_adapt.layers import GradientReversal  # imported here: it pulls in torchmetrics (seconds)

        self.grl = GradientReversal(weight=0.0)
        self.discriminator = domain_discriminator(feature_dim, hidden)

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        lam = dann_schedule(progress, self.gamma)
        self.grl.update_weight(lam)
        scores = self.discriminator(self.grl(torch.cat([f_s, f_t]))).squeeze(1)
        labels = domain_targets(scores, len(f_s), len(f_t), self.label_smoothing)
        domain_loss = F.binary_cross_entropy_with_logits(scores, labels, weight=self.domain_weights(y_s, logits_t))
        scalars = {
            "domain_loss": domain_loss.detach(),
            "reversal_weight": torch.tensor(lam),
            "discriminator_acc": binary_accuracy(scores, (labels > 0.5).float()),
        }
        return self.weight * domain_loss, scalars

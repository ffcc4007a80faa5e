"""Margin disparity discrepancy (MDD).

Zhang, Liu, Long and Jordan, "Bridging Theory and Algorithm for Domain Adaptation", ICML 2019
(arXiv:1904.05801). An adversarial classifier f' reads the features through a gradient reversal
layer; with h_f(x) the main classifier's predicted class,

    D_gamma = E_s[ -gamma * CE(f'(x), h_f(x)) ] + E_t[ log(1 - softmax(f'(x))[h_f(x)]) ]

f' maximises D_gamma (it agrees with the main classifier on source, disagrees on target) and the
features, behind the reversal, minimise it. As Transfer-Learning-Library's
``ClassificationMarginDisparityDiscrepancy`` (``tllib/alignment/mdd.py``) and its ``mdd.py`` example:
the loss added to the task loss is ``-D_gamma``; ``log(1 - p)`` is TLlib's ``shift_log``
(``log(clamp(1 - p + 1e-6, max=1))``); the predicted classes carry no gradient; the adversarial head
is Linear(F, width) -> ReLU -> Dropout(0.5) -> Linear(width, C) with N(0, 0.01) weights and zero
biases (width 1024, TLlib's default bottleneck width); the margin gamma is 4 (TLlib's default and
digits script). TLlib's reversal weight warms up from 0 to ``max_reversal`` = 0.1 as
``0.2 / (1 + exp(-i / 1000)) - 0.1`` over iterations i; here the same curve runs over the run's
progress p, ``max_reversal * (2 / (1 + exp(-gamma_p p)) - 1)`` (DANN's schedule, scaled).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from da.adapters.base import Adapter
from da.adapters.dann import dann_schedule
from da.registry import register_adapter
from da.config.search_space import log_uniform

#: TLlib's ``shift_log`` offset: log(1 - p) stays finite when p reaches 1.
SHIFT = 1e-6


def shift_log(x: Tensor, offset: float = SHIFT) -> Tensor:
    """log(min(x + offset, 1)), TLlib's ``shift_log``."""
    return torch.log(torch.clamp(x + offset, max=1.0))


def margin_disparity(logits_s: Tensor, adv_s: Tensor, logits_t: Tensor, adv_t: Tensor, margin: float) -> Tensor:
    """D_gamma of Zhang et al. 2019 (its log-loss surrogate): the mean source term plus the mean target
    term (TLlib's mean of their per-sample sum, for batches of one size)."""
    pred_s, pred_t = logits_s.argmax(1), logits_t.argmax(1)
    source = -margin * F.cross_entropy(adv_s, pred_s, reduction="none")
    target = shift_log(1.0 - F.softmax(adv_t, dim=1)).gather(1, pred_t[:, None]).squeeze(1)
    return source.mean() + target.mean()


def adversarial_head(feature_dim: int, num_classes: int, width: int, dropout: float = 0.5) -> nn.Sequential:
    """TLlib's MDD ``adv_head``: two linear layers, N(0, 0.01) weights, zero biases."""
    head = nn.Sequential(nn.Linear(feature_dim, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, num_classes))
    for layer in (head[0], head[3]):
        nn.init.normal_(layer.weight, 0.0, 0.01)
        nn.init.zeros_(layer.bias)
    return head


@register_adapter("mdd")
class MDD(Adapter):
    """Margin disparity discrepancy with an adversarial classifier behind gradient reversal (Zhang et al. 2019)."""

    search_space = {"weight": log_uniform(0.1, 10.0), "margin": log_uniform(1.0, 10.0)}

    description = "margin disparity discrepancy: an adversarial classifier behind gradient reversal (Zhang 2019)"

    def __init__(self, feature_dim: int, num_classes: int, margin: float = 4.0, width: int = 1024,
                 weight: float = 1.0, max_reversal: float = 0.1, gamma: float = 10.0, dropout: float = 0.5) -> None:
        super().__init__()
        if margin <= 0 or width <= 0 or max_reversal < 0 or not 0 <= dropout < 1:
            raise ValueError(f"mdd: margin > 0, width > 0, max_reversal >= 0 and dropout in [0, 1) are needed; got "
                             f"margin={margin}, width={width}, max_reversal={max_reversal}, dropout={dropout}")
        from pytorch_adapt.layers import GradientReversal  # imported here: it pulls in torchmetrics (seconds)

        self.margin, self.weight, self.max_reversal, self.gamma = margin, weight, max_reversal, gamma
        self.grl = GradientReversal(weight=0.0)
        self.adversarial_head = adversarial_head(feature_dim, num_classes, width, dropout)

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        lam = self.max_reversal * dann_schedule(progress, self.gamma)
        self.grl.update_weight(lam)
        adv = self.adversarial_head(self.grl(torch.cat([f_s, f_t])))
        adv_s, adv_t = adv[: len(f_s)], adv[len(f_s):]
        disparity = margin_disparity(logits_s.detach(), adv_s, logits_t.detach(), adv_t, self.margin)
        with torch.no_grad():
            agree_s = (adv_s.argmax(1) == logits_s.argmax(1)).float().mean()
            agree_t = (adv_t.argmax(1) == logits_t.argmax(1)).float().mean()
        scalars = {"disparity": disparity.detach(), "reversal_weight": torch.tensor(lam),
                   "agreement_source": agree_s, "agreement_target": agree_t}
        return -self.weight * disparity, scalars

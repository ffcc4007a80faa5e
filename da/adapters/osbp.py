"""Open set domain adaptation by backpropagation (Saito et al., ECCV 2018, arXiv:1804.10427).

The head gets one more output, "unknown" (the last of K + 1). Source images train the K known
classes through the loop's cross-entropy; for each target image the head is trained to give the
unknown class probability ``t`` (0.5), while the extractor, behind a gradient reversal layer, is
trained the other way: to push that probability away from ``t``, towards 0 (aligned with a known
class) or 1 (rejected as unknown). A target image is predicted unknown when the unknown output is the
head's argmax. The loss is Transfer-Learning-Library's ``UnknownClassBinaryCrossEntropy``:

    L(x_t) = - t log p(unknown | x_t) - (1 - t) log(1 - p(unknown | x_t))

with the reversal (weight 1, as TLlib's ``GradientReverseLayer``) between the features and the head
for the target batch (``Adapter.reversed_target_logits``; ``da.stages.joint.joint_forward``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from da.adapters.base import Adapter
from da.registry import register_adapter

EPS = 1e-6  # TLlib's


def unknown_bce(logits_t: Tensor, t: float = 0.5) -> Tensor:
    """OSBP's boundary loss on target logits (N, K + 1) whose last column is unknown."""
    p_unknown = torch.softmax(logits_t, dim=1)[:, -1]
    return -(t * torch.log(p_unknown + EPS)).mean() - ((1 - t) * torch.log(1 - p_unknown + EPS)).mean()


@register_adapter("osbp")
class OSBP(Adapter):
    """Open-set back-propagation: an unknown class at probability t, through gradient reversal (Saito 2018)."""

    description = "open-set: an unknown output held at t = 0.5 through gradient reversal (OSBP, Saito 2018)"
    settings = ("open_set",)
    head_extra = 1
    reversed_target_logits = True
    gradient_domains = ("target",)

    def __init__(self, t: float = 0.5, weight: float = 1.0) -> None:
        super().__init__()
        if not 0 < t < 1:
            raise ValueError(f"t is a probability in (0, 1), got {t}")
        self.t, self.weight = t, weight

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        boundary = unknown_bce(logits_t, self.t)
        p_unknown = torch.softmax(logits_t.detach(), dim=1)[:, -1]
        scalars = {"boundary_loss": boundary.detach(), "target_unknown_prob": p_unknown.mean(),
                   "target_unknown_rate": (logits_t.detach().argmax(1) == logits_t.shape[1] - 1).float().mean()}
        return self.weight * boundary, scalars

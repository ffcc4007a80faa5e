"""Partial adversarial domain adaptation (Cao et al., "Partial Adversarial Domain Adaptation", ECCV 2018,
arXiv:1808.04205): DANN whose source side, in the domain loss and in the source cross-entropy, is
weighted per class by the target's averaged predictions (``da.adapters.class_weights``), so the
source classes the target lacks stop being aligned with it. The same weighting is the
``class_weights: true`` option of ``dann`` and ``cdan``.
"""
from __future__ import annotations

from da.adapters.dann import DANN
from da.registry import register_adapter


@register_adapter("pada")
class PADA(DANN):
    """DANN with PADA's class weights from target predictions (Cao et al. 2018), for the partial setting."""

    description = "partial: DANN with class weights from averaged target predictions (PADA, Cao 2018)"

    def __init__(self, feature_dim: int, num_classes: int, hidden: int = 500, weight: float = 1.0,
                 gamma: float = 10.0, class_temperature: float = 0.1, label_smoothing: float = 0.0) -> None:
        super().__init__(feature_dim, num_classes, hidden, weight, gamma, class_weights=True,
                         class_temperature=class_temperature, label_smoothing=label_smoothing)

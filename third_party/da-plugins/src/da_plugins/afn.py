"""Adaptive Feature Norm, stepwise variant (SAFN).

Xu et al., "Larger Norm More Transferable: An Adaptive Feature Norm Approach for Unsupervised
Domain Adaptation", ICCV 2019 (arXiv:1811.07456).
"""
from __future__ import annotations

from da import Adapter, register_adapter


@register_adapter("afn")
class AFN(Adapter):
    """Stepwise Adaptive Feature Norm (Xu et al., ICCV 2019) on the features of both domains.

    For each domain, ``mean((||f|| - (||f||.detach() + delta))**2)``: every step pulls each
    feature's L2 norm ``delta`` beyond its current value, so the loss itself is always
    ``delta**2`` per domain and only its gradient matters. ``weight`` 0.05 and ``delta`` 1.0 are
    the paper's (and Transfer-Learning-Library's) values. The paper also puts dropout before the
    classifier: that is the model's ``model.head_dropout`` (an adapter is a loss and leaves the
    features the head reads alone). pytorch-adapt's ``AdaptiveFeatureNorm``.
    """

    description = "stepwise adaptive feature norm: larger feature norms in both domains (SAFN, Xu 2019)"

    def __init__(self, weight: float = 0.05, delta: float = 1.0) -> None:
        super().__init__()
        from pytorch_adapt.layers import AdaptiveFeatureNorm  # imported here: slow (torchmetrics)

        self.weight = weight
        self.afn = AdaptiveFeatureNorm(step_size=delta)

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        # Per domain, as in the paper, so a larger target batch does not outweigh the source one.
        norm_loss = self.afn(f_s) + self.afn(f_t)
        scalars = {
            "norm_loss": norm_loss.detach(),
            "source_feature_norm": f_s.detach().norm(dim=1).mean(),
            "target_feature_norm": f_t.detach().norm(dim=1).mean(),
        }
        return self.weight * norm_loss, scalars

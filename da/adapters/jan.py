"""Joint maximum mean discrepancy of features and class predictions.

Long et al., "Deep Transfer Learning with Joint Adaptation Networks" (JAN), ICML 2017. Where DAN
matches each layer's distribution on its own, JAN matches the joint distribution of several
layers' activations: its kernel is the product of one kernel per layer. As JAN pairs fc7 with the
softmax of fc8, this adapter pairs the bottleneck features with the softmax of the logits, so the
alignment sees which class the model takes each image for. Each layer's kernel is the multi-kernel
Gaussian of ``mmd`` (bandwidths ``2**k`` times that layer's median heuristic).
"""
from __future__ import annotations

from da.adapters.mmd import MMD
from da.registry import register_adapter


@register_adapter("jan")
class JAN(MMD):
    """Joint MMD of features and softmax predictions (JAN, Long et al. 2017)."""

    description = "joint MMD of features and softmax predictions (JAN, Long 2017)"

    def __init__(self, weight: float = 1.0, kernel_powers: tuple = (-3, -2, -1, 0, 1, 2),
                 estimator: str = "biased") -> None:
        """Arguments as ``mmd``'s; the layers are fixed: features and softmax predictions."""
        super().__init__(weight=weight, kernel_powers=kernel_powers, estimator=estimator, layer="features")

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        value = self.discrepancy([f_s, logits_s.softmax(dim=1)], [f_t, logits_t.softmax(dim=1)])
        return self.weight * value, {"jmmd": value.detach()}

"""Information maximisation on the target predictions.

Shi & Sha, "Information-Theoretical Learning of Discriminative Clusters for Unsupervised Domain
Adaptation", ICML 2012; the form used by SHOT: Liang et al., "Do We Really Need to Access the
Source Data? Source Hypothesis Transfer for Unsupervised Domain Adaptation", ICML 2020.
"""
from __future__ import annotations

from da import Adapter, register_adapter


@register_adapter("im")
class IM(Adapter):
    """Information maximisation (Shi & Sha 2012; SHOT, Liang et al. 2020) on the target predictions.

    ``entropy + diversity_weight * diversity``, where entropy is the mean per-sample entropy of
    the target predictions (low when each is confident) and diversity is minus the entropy of
    their batch mean (low when the batch spreads evenly over the classes). Minimising the sum
    maximises the mutual information between target inputs and predicted classes. SHOT uses
    ``weight`` 1 and ``diversity_weight`` 1. pytorch-adapt's ``EntropyLoss`` and ``DiversityLoss``.
    """

    description = "information maximisation: confident yet diverse target predictions (SHOT, Liang 2020)"
    gradient_domains = ("target",)

    def __init__(self, weight: float = 1.0, diversity_weight: float = 1.0) -> None:
        super().__init__()
        from pytorch_adapt.layers import DiversityLoss, EntropyLoss  # imported here: slow (torchmetrics)

        self.weight = weight
        self.diversity_weight = diversity_weight
        self.entropy = EntropyLoss()
        self.diversity = DiversityLoss()

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        entropy = self.entropy(logits_t)
        diversity = self.diversity(logits_t)
        value = entropy + self.diversity_weight * diversity
        scalars = {"im": value.detach(), "entropy": entropy.detach(), "diversity": diversity.detach()}
        return self.weight * value, scalars

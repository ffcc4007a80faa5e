"""Conditional adversarial alignment with entropy conditioning (CDAN+E).

Long, Cao, Wang and Jordan, "Conditional Adversarial Domain Adaptation", NeurIPS 2018
(arXiv:1705.10667). The discriminator sees features conditioned on the classifier's predictions,
through the multilinear map f ⊗ g, or its randomized approximation when f ⊗ g is too wide.
``label_smoothing`` softens the discriminator's targets (environment label smoothing, Zhang et al.,
ICLR 2023; ``da.adapters.label_smoothing``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from da.adapters.base import Adapter, binary_accuracy
from da.adapters.class_weights import ClassWeighting
from da.adapters.dann import dann_schedule, domain_discriminator
from da.adapters.label_smoothing import check_label_smoothing, domain_targets
from da.registry import register_adapter
from da.config.search_space import choice, log_uniform

#: Above this width of f ⊗ g the randomized map is the default (f ⊗ g grows as F * C; LeNet on digits: 5000).
MAX_MULTILINEAR_DIM = 4096


def multilinear_map(f: Tensor, g: Tensor) -> Tensor:
    """Per-sample outer product g ⊗ f, flattened to (N, C * F) in TLlib's order (index c * F + j)."""
    return torch.einsum("nc,nf->ncf", g, f).flatten(1)


def entropy_weights(logits: Tensor) -> Tensor:
    """CDAN+E weights 1 + exp(-H(softmax(logits))), normalised to sum 1 over the batch; no gradient.

    Confident predictions (low entropy) weigh more. Call once per domain, so each domain sums to 1
    (as in the authors' code).
    """
    from pytorch_adapt.layers import EntropyWeights  # pulls in torchmetrics: imported on first use

    return EntropyWeights()(logits.detach())


def uses_randomized(feature_dim: int, num_classes: int, randomized: bool | None) -> bool:
    """The randomized map when asked for, or (``None``) when f ⊗ g would exceed 4096 dims."""
    return feature_dim * num_classes > MAX_MULTILINEAR_DIM if randomized is None else randomized


@register_adapter("cdan")
class CDAN(ClassWeighting, Adapter):
    """Conditional adversarial alignment on features ⊗ predictions, entropy-weighted (Long et al. 2018)."""

    #: DomainBed's DANN range for the loss weight (10^U(-2, 2)), narrowed to a decade each side
    search_space = {"weight": log_uniform(0.1, 10.0), "hidden": choice([256, 500, 1024])}

    description = "conditional adversarial: discriminator on features x class probabilities, CDAN+E (Long 2018)"

    def __init__(
        self,
        feature_dim: int,
        num_classes: int,
        hidden: int = 500,
        weight: float = 1.0,
        gamma: float = 10.0,
        entropy: bool = True,
        randomized: bool | None = None,  # None: randomized when feature_dim * num_classes > 4096
        randomized_dim: int = 1024,
        class_weights: bool = False,
        class_temperature: float = 0.1,
        label_smoothing: float = 0.0,  # ELS (Zhang et al. 2023): targets 1 - eps (source) and eps (target)
    ) -> None:
        super().__init__()
        self.init_class_weights(class_weights, num_classes, class_temperature)  # PADA's, for the partial setting
        if randomized_dim <= 0:
            raise ValueError(f"randomized_dim must be positive, got {randomized_dim}")
        check_label_smoothing("cdan", label_smoothing)
        self.label_smoothing = float(label_smoothing)
        from pytorch_adapt.layers import GradientReversal, RandomizedDotProduct

        self.weight = weight
        self.gamma = gamma
        self.entropy = entropy
        # Fixed Gaussian matrices R_f, R_g: buffers, so they come from the run's seed and are checkpointed.
        self.randomized: nn.Module | None = (
            RandomizedDotProduct([feature_dim, num_classes], randomized_dim)
            if uses_randomized(feature_dim, num_classes, randomized) else None
        )
        self.grl = GradientReversal(weight=0.0)
        width = randomized_dim if self.randomized is not None else feature_dim * num_classes
        self.discriminator = domain_discriminator(width, hidden)

    def condition(self, f: Tensor, g: Tensor) -> Tensor:
        """What the discriminator sees: f ⊗ g, or (R_f f) ⊙ (R_g g) / sqrt(d)."""
        return multilinear_map(f, g) if self.randomized is None else self.randomized(f, g)

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        lam = dann_schedule(progress, self.gamma)
        self.grl.update_weight(lam)
        # Predictions condition the discriminator but receive no gradient from it (authors' code, TLlib).
        g = torch.softmax(torch.cat([logits_s, logits_t]).detach(), dim=1)
        scores = self.discriminator(self.grl(self.condition(torch.cat([f_s, f_t]), g))).squeeze(1)
        labels = domain_targets(scores, len(f_s), len(f_t), self.label_smoothing)
        per_sample = F.binary_cross_entropy_with_logits(scores, labels, reduction="none")
        classes = self.domain_weights(y_s, logits_t)
        if classes is not None:
            per_sample = per_sample * classes
        if self.entropy:
            # Each domain's weights sum to 1; halving makes uniform weights give the plain mean.
            w = torch.cat([entropy_weights(logits_s), entropy_weights(logits_t)]) / 2
            domain_loss = (w * per_sample).sum()
        else:
            domain_loss = per_sample.mean()
        scalars = {
            "domain_loss": domain_loss.detach(),
            "reversal_weight": torch.tensor(lam),
            "discriminator_acc": binary_accuracy(scores, (labels > 0.5).float()),
        }
        return self.weight * domain_loss, scalars

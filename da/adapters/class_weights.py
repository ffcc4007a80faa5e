"""Class weights from target predictions, for the partial setting (PADA: Cao et al., "Partial adversarial
domain adaptation", ECCV 2018, arXiv:1808.04205).

When the target holds only some of the source classes, aligning every source image with the target
pulls the outlier (source-private) classes onto target images: negative transfer. PADA weighs each
source class by how much the target predictions use it,

    gamma = mean over target images of softmax(logits / T),   normalised here to sum to the number of classes,

so a class the target never predicts fades from the source cross-entropy and from the domain
discriminator's source side (its target side takes the mean weight of the source batch, as
Transfer-Learning-Library's ``get_class_weight_for_adversarial_loss``). The average runs over every
target batch as an exponential moving average (TLlib recomputes it over the whole target set every
500 steps), from predictions alone: no target label is read. TLlib divides gamma by its largest
entry; normalising to a sum of K keeps the unweighted losses' scale (gamma = 1 everywhere at start).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class TargetClassWeights(nn.Module):
    """An exponential moving average of the target's mean prediction, as per-class weights."""

    def __init__(self, num_classes: int, temperature: float = 0.1, momentum: float = 0.99) -> None:
        super().__init__()
        if temperature <= 0 or not 0 <= momentum < 1:
            raise ValueError(f"class weights need temperature > 0 and momentum in [0, 1), got {temperature} and {momentum}")
        self.num_classes, self.temperature, self.momentum = num_classes, temperature, momentum
        self.register_buffer("average", torch.full((num_classes,), 1.0 / num_classes))

    @torch.no_grad()
    def update(self, logits_t: Tensor) -> None:
        """Fold a target batch's mean prediction into the average (training only)."""
        if self.training:
            p = (logits_t[:, : self.num_classes].detach().float() / self.temperature).softmax(1).mean(0)
            self.average.mul_(self.momentum).add_(p, alpha=1 - self.momentum)

    def weights(self) -> Tensor:
        """gamma, summing to the number of classes."""
        return self.average * (self.num_classes / self.average.sum())

    def domain_weights(self, y_s: Tensor, n_target: int) -> Tensor:
        """Per-image weights of a discriminator's loss: source by class, target at the source batch's mean."""
        w_s = self.weights()[y_s]
        return torch.cat([w_s, w_s.mean().expand(n_target)])


class ClassWeighting:
    """For an adapter: ``class_weights=True`` keeps PADA's weights; ``class_weight`` gives them to the
    loop's source cross-entropy (``Adapter.class_weight``)."""

    target_weights: TargetClassWeights | None

    def init_class_weights(self, enabled: bool, num_classes: int, temperature: float) -> None:
        if enabled and num_classes < 2:
            raise ValueError("class_weights needs the number of classes (the loop passes num_classes)")
        self.target_weights = TargetClassWeights(num_classes, temperature) if enabled else None

    def class_weight(self) -> Tensor | None:
        return self.target_weights.weights() if self.target_weights is not None else None

    def domain_weights(self, y_s: Tensor, logits_t: Tensor) -> Tensor | None:
        """Updates the weights with this target batch, then the discriminator's per-image weights (None: unweighted)."""
        if self.target_weights is None:
            return None
        self.target_weights.update(logits_t)
        return self.target_weights.domain_weights(y_s, len(logits_t))

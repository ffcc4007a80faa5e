"""Maximum Classifier Discrepancy (Saito et al., "Maximum Classifier Discrepancy for Unsupervised
Domain Adaptation", CVPR 2018, arXiv:1712.02560).

Two classifiers on one feature extractor. Each training step has three sub-steps:

- A: extractor and both classifiers learn the labelled source (cross-entropy of each);
- B: with the extractor fixed, the classifiers keep fitting the source while *maximising* their
  discrepancy on target images, so they disagree where target features lie outside the source support;
- C: with the classifiers fixed, the extractor *minimises* that discrepancy (``num_k`` times,
  4 in the paper's digit experiments), moving target features inside the support.

The discrepancy is the mean absolute difference of the two softmax outputs (the paper's L1 form,
as in its code and Transfer-Learning-Library's ``classifier_discrepancy``). The loop's head is
the first classifier (the one evaluation reads); the adapter owns the second.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from da.adapters.base import Adapter, ParamGroup, Update
from da.registry import register_adapter

if TYPE_CHECKING:
    from da.train.model import Model


def discrepancy(logits_1: Tensor, logits_2: Tensor) -> Tensor:
    """Mean over samples and classes of |softmax_1 - softmax_2| (Saito et al. 2018, eq. 1)."""
    return (logits_1.softmax(1) - logits_2.softmax(1)).abs().mean()


@register_adapter("mcd")
class MCD(Adapter):
    """Maximum classifier discrepancy: two heads, three sub-steps per step (Saito et al. 2018)."""

    description = "maximum classifier discrepancy: two heads, steps A / B / C (Saito 2018)"
    aligns_by_gradient = False  # it aligns through its own update, not through ``loss``

    def __init__(self, feature_dim: int, num_classes: int, num_k: int = 4) -> None:
        super().__init__()
        if num_k < 1:
            raise ValueError(f"num_k (extractor steps per step) must be at least 1, got {num_k}")
        self.num_k = num_k
        self.head_2 = nn.Linear(feature_dim, num_classes)

    def optimizers(self, model: "Model") -> dict[str, list[ParamGroup]]:
        """Step A steps both optimizers, B the classifiers' only, C the extractor's only."""
        return {"extractor": [ParamGroup("extractor", model.extractor)],
                "classifiers": [ParamGroup("head", model.head), ParamGroup("head_2", self.head_2)]}

    def update(self, model: "Model", batch: dict[str, tuple[Tensor, Tensor]], *, progress: float,
               log: bool) -> Iterator[Update]:
        """The three sub-steps' losses, each with the optimizers it steps."""
        (x_s, y_s), (x_t, _) = batch["source"], batch["target"]
        n = len(x_s)
        f_s = model.features(x_s)
        logits_s = model.head(f_s)
        task = F.cross_entropy(logits_s, y_s) + F.cross_entropy(self.head_2(f_s), y_s)
        yield Update(task, ("extractor", "classifiers"),
                     {"loss/task": task.detach() / 2, "acc/source_batch": (logits_s.argmax(1) == y_s).float().mean()}
                     if log else {})
        with torch.no_grad():
            f = model.features(torch.cat([x_s, x_t]))
        f_s, f_t = f[:n], f[n:]
        task = F.cross_entropy(model.head(f_s), y_s) + F.cross_entropy(self.head_2(f_s), y_s)
        gap = discrepancy(model.head(f_t), self.head_2(f_t))
        yield Update(task - gap, "classifiers", {"adapter/discrepancy_b": gap.detach()} if log else {})
        for _ in range(self.num_k):
            f_t = model.features(x_t)
            gap = discrepancy(model.head(f_t), self.head_2(f_t))
            yield Update(gap, "extractor", {"loss/total": gap.detach(), "adapter/discrepancy_c": gap.detach()}
                         if log else {})

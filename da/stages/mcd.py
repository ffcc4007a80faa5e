"""Maximum Classifier Discrepancy (Saito et al., "Maximum Classifier Discrepancy for Unsupervised
Domain Adaptation", CVPR 2018, arXiv:1712.02560).

Two classifiers on one feature extractor. Each training step has three sub-steps:

- A: extractor and both classifiers learn the labelled source (cross-entropy of each);
- B: with the extractor fixed, the classifiers keep fitting the source while *maximising* their
  discrepancy on target images, so they disagree where target features lie outside the source support;
- C: with the classifiers fixed, the extractor *minimises* that discrepancy (``num_k`` times,
  4 in the paper's digit experiments), moving target features inside the support.

The discrepancy is the mean absolute difference of the two softmax outputs (the paper's L1 form,
as in its code and Transfer-Learning-Library's ``classifier_discrepancy``). Each classifier is the
paper's three-layer head with batch norm and dropout (``classifier``; Transfer-Learning-Library's
``ImageClassifierHead`` has the same layout, 1,024 wide), and, as in the authors' code, source and
target batches go through extractor and classifiers separately in all three sub-steps, so every
batch norm sees one domain at a time. The stage gives the model two new classifiers: the model's
head (the one evaluation reads) and its ``head_2`` slot.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from da.errors import DAError
from da.registry import register_stage
from da.stages.adapt import Adapt
from da.stages.base import ParamGroup, Update
from da.train.run import Run, StageContext



def discrepancy(logits_1: Tensor, logits_2: Tensor) -> Tensor:
    """Mean over samples and classes of |softmax_1 - softmax_2| (Saito et al. 2018, eq. 1)."""
    return (logits_1.softmax(1) - logits_2.softmax(1)).abs().mean()


def classifier(in_features: int, num_classes: int, hidden: int, dropout: float = 0.5) -> nn.Sequential:
    """MCD's classifier: dropout, two hidden layers with batch norm and ReLU (dropout between), a linear output."""
    return nn.Sequential(
        nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


@register_stage("mcd")
class MCD(Adapt):
    """Maximum classifier discrepancy: two three-layer heads, three sub-steps per step (Saito et al. 2018)."""

    label = "MCD"
    description = "MCD: two three-layer heads, steps A / B / C (Saito 2018)"
    fills_slots = ("head_2",)

    def __init__(self, num_k: int = 4, hidden: int = 100, dropout: float = 0.5) -> None:
        """``hidden``: width of the classifiers' hidden layers (the authors' digit classifiers: 100)."""
        super().__init__()
        if num_k < 1:
            raise DAError(f"stage mcd: num_k (extractor steps per step) must be at least 1, got {num_k}")
        if hidden < 1 or not 0 <= dropout < 1:
            raise DAError(f"stage mcd: hidden must be positive and dropout in [0, 1), got {hidden} and {dropout}")
        self.num_k, self.hidden, self.dropout = num_k, hidden, dropout

    def fill_slots(self, run: "Run", fresh: bool) -> None:
        m = run.model
        width, classes = m.extractor.out_features, run.domains.num_classes
        m.head = classifier(width, classes, self.hidden, self.dropout).to(run.device)
        m.head_2 = classifier(width, classes, self.hidden, self.dropout).to(run.device)

    def optimizers(self, run: "Run", done: int) -> dict[str, list[ParamGroup]]:
        """Step A steps both optimizers, B the classifiers' only, C the extractor's only."""
        m = run.model
        return {"extractor": [ParamGroup("extractor", m.extractor)],
                "classifiers": [ParamGroup("head", m.head), ParamGroup("head_2", m.head_2)]}

    def _train_modes(self, run: "Run") -> None:
        for module in (run.model.extractor, run.model.head, run.model.head_2):
            module.train()

    def images_per_step(self, run: "Run") -> int:
        return 2 * run.config.train.batch_size

    def step(self, ctx: "StageContext", step: int, batch: dict[str, tuple[Tensor, Tensor]], log: bool) -> Iterator[Update]:
        """The three sub-steps' losses, each with the optimizers it steps."""
        m = ctx.run.model
        (x_s, y_s), (x_t, _) = batch["source"], batch["target"]
        f_s = m.features(x_s)
        logits_s = m.head(f_s)
        task = F.cross_entropy(logits_s, y_s) + F.cross_entropy(m.head_2(f_s), y_s)
        yield Update(task, ("extractor", "classifiers"),
                     {"loss/task": task.detach() / 2, "acc/source_batch": (logits_s.argmax(1) == y_s).float().mean()}
                     if log else {})
        with torch.no_grad():
            f_s, f_t = m.features(x_s), m.features(x_t)
        task = F.cross_entropy(m.head(f_s), y_s) + F.cross_entropy(m.head_2(f_s), y_s)
        gap = discrepancy(m.head(f_t), m.head_2(f_t))
        yield Update(task - gap, "classifiers", {"adapter/discrepancy_b": gap.detach()} if log else {})
        for _ in range(self.num_k):
            f_t = m.features(x_t)
            gap = discrepancy(m.head(f_t), m.head_2(f_t))
            yield Update(gap, "extractor", {"loss/total": gap.detach(), "adapter/discrepancy_c": gap.detach()}
                         if log else {})

"""Source-free adaptation: SHOT, source hypothesis transfer (Liang et al., "Do We Really Need to
Access the Source Data? Source Hypothesis Transfer for Unsupervised Domain Adaptation", ICML 2020,
arXiv:2002.08546).

Start from a model trained on the source (this run's pretraining stage, or ``pretrain.checkpoint``
for a user who received a trained model but not its data), freeze its classifier (the "hypothesis")
and adapt the feature extractor on unlabelled target images alone, with

- information maximisation: each prediction confident (low entropy), the predictions of a batch
  spread over the classes (high entropy of their mean);
- cross-entropy, weighted by ``cls_weight`` (the paper's beta, 0.3; its digit script uses 0.1),
  to pseudo-labels from a weighted k-means in feature space (``da.stages.shot_labels``),
  recomputed over the whole target train split at the start of every epoch.

Nothing here reads a source image: the stage draws no source batch (it has no samplers; it walks
its own seeded permutation of the target train split, whose indices address the pseudo-labels).
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from da.errors import DAError
from da.registry import register_stage
from da.stages.base import OptimSettings, ParamGroup, Stage, Update
from da.stages.shot_labels import cluster_pseudo_labels, information_maximisation
from da.train.run import Run, StageContext

#: Added to the run's seed for the stage's own permutation generator.
SEED_OFFSET = 2020


@register_stage("shot")
class Shot(Stage):
    """Source-free SHOT: frozen head, extractor adapted by information maximisation + clustering pseudo-labels."""

    label = "source-free adaptation"
    description = "SHOT, source-free: frozen head, information maximisation + clustering pseudo-labels (Liang 2020)"
    needs_source_model = True
    shown = {"loss": "loss/total"}

    def __init__(self, epochs: int = 15, batch_size: int = 64, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 1e-3, lr_schedule: str = "inv", entropy_weight: float = 1.0,
                 diversity_weight: float = 1.0, cls_weight: float = 0.3, rounds: int = 1, max_steps: int = 0) -> None:
        if epochs < 0 or batch_size < 1:
            raise DAError(f"stage shot: epochs must be >= 0 and batch_size >= 1, got {epochs} and {batch_size}")
        self.epochs, self.batch_size = epochs, batch_size
        self.optim = OptimSettings(lr, momentum, weight_decay, True, lr_schedule)
        self.entropy_weight, self.diversity_weight, self.cls_weight = entropy_weight, diversity_weight, cls_weight
        self.rounds = rounds
        self.max_steps = max_steps  # > 0: at most this many steps (a large target split: fewer, longer epochs)
        self.generator = torch.Generator()
        self.order = torch.empty(0, dtype=torch.long)
        self.pos = 0
        self.labels = torch.empty(0, dtype=torch.long)

    def per_epoch(self, run: "Run") -> int:
        n = len(run.domains.target_train)
        if n < self.batch_size:
            raise DAError(f"stage shot: batch_size {self.batch_size} exceeds the {n} target train images; lower it")
        return n // self.batch_size

    def steps(self, run: "Run") -> int:
        steps = self.epochs * self.per_epoch(run)
        return min(steps, self.max_steps) if self.max_steps > 0 else steps

    def settings(self, run: "Run") -> OptimSettings:
        return self.optim

    def optimizers(self, run: "Run", done: int) -> dict[str, list[ParamGroup]]:
        m = run.model
        m.head.requires_grad_(False)  # the source hypothesis stays fixed
        return {"main": [ParamGroup("extractor", m.extractor)]}

    def begin(self, ctx: "StageContext") -> None:
        self.generator.manual_seed(ctx.run.config.seed + SEED_OFFSET)
        self._modes(ctx.run)

    def resumed(self, ctx: "StageContext") -> None:
        self._modes(ctx.run)

    def _modes(self, run: "Run") -> None:
        run.model.head.eval()
        run.model.extractor.train()

    def images_per_step(self, run: "Run") -> int:
        return self.batch_size

    @torch.no_grad()
    def refresh_labels(self, run: "Run") -> None:
        """Pseudo-labels of every target train image, from the current extractor in eval mode."""
        m = run.model
        features, probs = [], []
        with m.eval_mode():
            for x, _ in run.domains.target_train.batches(2000):
                f = m.embed(x, "target")
                features.append(f)
                probs.append(m.head(f).softmax(1))
        self.labels = cluster_pseudo_labels(torch.cat(features), torch.cat(probs), self.rounds)

    def next_index(self, run: "Run") -> Tensor:
        """The next batch's indices into target train; at each epoch's start a new permutation and new labels."""
        if self.pos + self.batch_size > len(self.order):
            self.order = torch.randperm(len(run.domains.target_train), generator=self.generator)
            self.pos = 0
            if self.cls_weight > 0:
                self.refresh_labels(run)
        index = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return index

    def step(self, ctx: "StageContext", step: int, batch: dict[str, tuple[Tensor, Tensor]], log: bool) -> Iterator[Update]:
        run, m = ctx.run, ctx.run.model
        index = self.next_index(run)
        x = run.domains.target_train.images(index.to(run.device))
        logits = m.head(m.embed(x, "target"))
        entropy, diversity = information_maximisation(logits)
        total = self.entropy_weight * entropy - self.diversity_weight * diversity
        if self.cls_weight > 0:
            pseudo = F.cross_entropy(logits, self.labels[index].to(logits.device))
            total = total + self.cls_weight * pseudo
        scalars: dict[str, Any] = {}
        if log:
            scalars = {"loss/total": total.detach(), "shot/entropy": entropy.detach(), "shot/diversity": diversity.detach()}
            if self.cls_weight > 0:
                scalars["shot/pseudo_label_ce"] = pseudo.detach()
                scalars["shot/pseudo_label_agreement"] = (logits.argmax(1).cpu() == self.labels[index]).float().mean()
        yield Update(total, scalars=scalars)

    def end(self, ctx: "StageContext", last: int) -> None:
        ctx.run.summary["steps_done"] = last

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "order": self.order, "pos": self.pos, "labels": self.labels}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.generator.set_state(state["generator"])
            self.order, self.pos, self.labels = state["order"], state["pos"], state["labels"]

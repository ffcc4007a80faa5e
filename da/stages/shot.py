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

Nothing here reads a source image: the stage draws no source batch. Its one sampler walks the target
train split in epoch permutations seeded apart from the run's generator, and gives each batch's
indices, which address the pseudo-labels.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from da.data import Sampler
from da.data.sampler import IndexedBatches
from da.errors import DAError
from da.registry import register_stage
from da.stages.base import OptimSettings, ParamGroup, Stage, Update
from da.models.unknown import EntropyRule, two_means
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
    predicts_unknown = True  # its open-set variant (the others never see an unknown image)
    fills_slots = ("unknown",)
    shown = {"loss": "loss/total"}

    def __init__(self, epochs: int = 15, batch_size: int = 64, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 1e-3, lr_schedule: str = "inv", entropy_weight: float = 1.0,
                 diversity_weight: float = 1.0, cls_weight: float = 0.3, rounds: int = 1, max_steps: int = 0,
                 class_threshold: int = 0) -> None:
        if epochs < 0 or batch_size < 1:
            raise DAError(f"stage shot: epochs must be >= 0 and batch_size >= 1, got {epochs} and {batch_size}")
        self.epochs, self.batch_size = epochs, batch_size
        self.optim = OptimSettings(lr, momentum, weight_decay, True, lr_schedule)
        self.entropy_weight, self.diversity_weight, self.cls_weight = entropy_weight, diversity_weight, cls_weight
        self.rounds = rounds
        self.max_steps = max_steps  # > 0: at most this many steps (a large target split: fewer, longer epochs)
        self.class_threshold = class_threshold  # partial setting: centroids for classes predicted more often
        self.labels = torch.empty(0, dtype=torch.long)
        self.setting = "closed"  # the run's label-set setting (da.data.label_sets), set when the stage starts

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
        m.head.requires_grad_(False)  # the source hypothesis stays fixed in this stage (the next one trains it again)
        return {"main": [ParamGroup("extractor", m.extractor)]}

    def samplers(self, run: "Run") -> dict[str, "Sampler"]:
        """Target train images with their indices, in SHOT's own seeded order (new pseudo-labels each epoch)."""
        generator = torch.Generator().manual_seed(run.config.seed + SEED_OFFSET)
        return {"target": IndexedBatches(run.domains.target_train, self.batch_size, generator, run.device)}

    def check_data(self, config: Any, domains: Any) -> None:
        if domains.setting not in ("closed", "partial", "open_set"):
            raise DAError(f"stage shot has closed-set, partial and open-set variants, and this config is {domains.setting}; "
                          f"use ovanet for the universal setting")

    def fill_slots(self, run: "Run", fresh: bool) -> None:
        """The open-set variant calls high-entropy target images unknown: an ``EntropyRule`` in the
        model's ``unknown`` slot, whose threshold each pseudo-labelling refits."""
        self.setting = run.domains.setting
        if self.setting == "open_set" and run.model.unknown is None:
            run.model.unknown = EntropyRule().to(run.device)

    def begin(self, ctx: "StageContext") -> None:
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
        features, logits = [], []
        with m.eval_mode():
            for x, _ in run.domains.target_train.batches(2000):
                f = m.embed(x, "target")
                features.append(f)
                logits.append(m.head(f))
        f, out = torch.cat(features), torch.cat(logits)
        if self.setting != "open_set":
            min_count = self.class_threshold if self.setting == "partial" else None
            self.labels = cluster_pseudo_labels(f, out.softmax(1), self.rounds, min_count).cpu()
            return
        # SHOT's open-set variant (its image_target_oda.py): a 2-means split of the normalised entropies;
        # the high-entropy cluster is unknown (label K, left out of the losses), the rest clustered as usual.
        centres, high = two_means(EntropyRule.entropy(out).cpu())
        m.unknown.threshold.fill_(centres.mean().item())
        self.labels = torch.full((len(f),), run.domains.label_sets.unknown, dtype=torch.long)
        known = ~high
        if known.any():
            self.labels[known] = cluster_pseudo_labels(f[known.to(f.device)], out[known.to(out.device)].softmax(1),
                                                       self.rounds).cpu()

    def step(self, ctx: "StageContext", step: int, batch: dict[str, tuple[Tensor, Tensor]], log: bool) -> Iterator[Update]:
        run, m = ctx.run, ctx.run.model
        x, index = batch["target"]
        if self.cls_weight > 0 and ctx.samplers["target"].epoch_started:  # a new epoch: new pseudo-labels
            self.refresh_labels(run)
        logits = m.head(m.embed(x, "target"))
        entropy, diversity = information_maximisation(logits)
        diversity_weight = 0.0 if self.setting == "partial" else self.diversity_weight  # SHOT's partial: gent off
        labels = self.labels[index].to(logits.device) if len(self.labels) else None
        if self.setting == "open_set" and labels is not None:  # only images clustered as known enter the losses
            known = labels < logits.shape[1]
            entropy = information_maximisation(logits[known])[0] if known.any() else logits.new_zeros(())
            logits_k, labels = logits[known], labels[known]
        else:
            logits_k = logits
        total = self.entropy_weight * entropy - diversity_weight * diversity
        if self.cls_weight > 0:
            pseudo = F.cross_entropy(logits_k, labels) if len(labels) else logits.new_zeros(())
            total = total + self.cls_weight * pseudo
        scalars: dict[str, Any] = {}
        if log:
            scalars = {"loss/total": total.detach(), "shot/entropy": entropy.detach(), "shot/diversity": diversity.detach()}
            if self.cls_weight > 0:
                scalars["shot/pseudo_label_ce"] = pseudo.detach()
                scalars["shot/pseudo_label_agreement"] = (logits_k.argmax(1) == labels).float().mean()
        yield Update(total, scalars=scalars)

    def state_dict(self) -> dict[str, Any]:
        return {"labels": self.labels}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.labels = state["labels"]

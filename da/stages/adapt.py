"""Joint adaptation: extractor, head and adapter trained together on source + target batches.

    labelled source batch  -+                      +-> head -> CE(y_s)              -+
                            +-> feature extractor -+                                 +-> total -> one optimizer
    unlabelled target batch-+                      +-> adapter.loss(f_s, f_t, ...)  -+

Source and target batches go through the extractor in one forward over ``cat(x_s, x_t)`` (as in
Transfer-Learning-Library), so batch-norm statistics see both domains. With target labels
(``data.target_labels_per_class``) each step also draws a labelled target batch whose cross-entropy
joins the task loss; ``train.source_weight`` weighs the source's. Fine-tuning strategies
(``da.finetune``) decide which extractor blocks train when and how fast; early stopping restores
the best evaluation by a label-free validator. Methods that train in their own way (``adda``,
``mcd``, ``subspace``) are stages of their own that reuse this one's batches, evaluation and end.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from da.data import Sampler
from da.errors import DAError
from da.finetune import FineTuning
from da.registry import register_stage
from da.stages.augmentation import augmentation
from da.stages.base import OptimSettings, ParamGroup, Stage, Update
from da.stages.joint import Alignment, alignment, joint_forward
from da.train.selection import record_evaluation, restore_best, track_best
from da.train.run import Run, StageContext
from da.config.search_space import log_uniform



@register_stage("adapt")
class Adapt(Stage):
    """The ``train:`` section's adaptation stage, for every adapter."""

    #: The adaptation stage's own hyperparameters (the adapter's are on its class).
    search_space = {"train.lr": log_uniform(1e-3, 5e-2), "train.adapter_lr_mult": log_uniform(1.0, 10.0),
                    "train.weight_decay": log_uniform(1e-5, 1e-3)}

    label = "adaptation"
    description = "joint adaptation: task loss + the adapter's loss, one optimizer (train: section)"
    shown = {"loss": "loss/total", "src_acc": "acc/source_batch"}

    def __init__(self) -> None:
        self.fine_tuning: FineTuning | None = None

    def steps(self, run: "Run") -> int:
        return run.config.train.steps

    def optimizers(self, run: "Run", done: int) -> dict[str, list[ParamGroup]]:
        m = run.model
        self.fine_tuning = FineTuning.for_adaptation(m.extractor, m.head, m.adapter, run.config.train)
        self.fine_tuning.set_modes(done)
        return {"main": [ParamGroup(g.name, g.module, g.lr_mult) for g in self.fine_tuning.trainable(done)]}

    def samplers(self, run: "Run") -> dict[str, "Sampler"]:
        d, bs = run.domains, run.config.train.batch_size
        out = {"source": run.sampler(d.source_train, bs, augmentation(run, "source", d.source_train)),
               "target": run.sampler(d.target_train, bs, augmentation(run, "target", d.target_train))}
        if d.target_labelled is not None:
            split = d.target_labelled
            out["target_labelled"] = run.sampler(split, min(bs, len(split)), augmentation(run, "target_labelled", split))
        return out

    def _train_modes(self, run: "Run") -> None:
        run.model.head.train()
        run.model.adapter.train()

    def begin(self, ctx: "StageContext") -> None:
        ctx.run.start_target_norms()
        self._train_modes(ctx.run)

    def resumed(self, ctx: "StageContext") -> None:
        self._train_modes(ctx.run)
        if ctx.run.early_stopping.stopped_at is not None:  # stopped early and killed before it restored its best
            ctx.first_step = ctx.steps + 1

    def unlabelled(self, run: "Run") -> bool:
        """Source and unlabelled target batches matter unless the source loss is off and the adapter's
        loss is the base class's zero (source_only): then only labelled target images go through."""
        return run.config.train.source_weight > 0 or run.model.adapter.aligns_by_gradient

    def images_per_step(self, run: "Run") -> int:
        labelled = run.domains.target_labelled
        return ((2 * run.config.train.batch_size if self.unlabelled(run) else 0)
                + (min(run.config.train.batch_size, len(labelled)) if labelled is not None else 0))

    def settings(self, run: "Run") -> OptimSettings:
        """The ``train:`` section's; SAM around the optimizer when ``train.sam_rho`` > 0 (SDAT)."""
        base, t = super().settings(run), run.config.train
        if not sharpness_aware(self) or t.sam_rho <= 0:
            return base
        return dataclasses.replace(base, sam_rho=t.sam_rho, sam_adaptive=t.sam_adaptive)

    def step(self, ctx: "StageContext", step: int, batch: dict[str, tuple[Tensor, Tensor]], log: bool) -> Iterator[Update]:
        """One update of the task loss plus the adapter's; with ``train.sam_rho`` > 0 (SDAT, Rangwani et
        al. 2022, ``examples/cdan_sdat.py``) first an ascent update: the task loss alone climbs
        ``rho`` along its normalised gradient (SAM's ``first_step``), then the full loss at those
        weights steps from the weights before the climb. The adapter's parameters (a discriminator)
        get no gradient from the task loss, so they are not perturbed, as SDAT's discriminator, on an
        optimizer of its own, is not."""
        if ctx.run.config.train.sam_rho > 0:
            task, _, _ = self.losses(ctx, step, batch, log=False, with_adapter=False)
            yield Update(task, perturb=True)
        task, align, values = self.losses(ctx, step, batch, log)
        total = task + align.loss
        if log:
            values.update({"loss/total": total.detach(), "loss/task": task.detach(), "loss/adapter": align.loss.detach()})
        yield Update(total, scalars=values if log else {})

    def losses(self, ctx: "StageContext", step: int, batch: dict[str, tuple[Tensor, Tensor]], log: bool,
               with_adapter: bool = True) -> tuple[Tensor, Alignment, dict[str, float | Tensor]]:
        """The task loss (source cross-entropy, plus the labelled target's), the adapter's loss (zero
        without ``with_adapter``) and the step's scalars, from one joint forward."""
        run, m, cfg = ctx.run, ctx.run.model, ctx.run.config.train
        progress = (step - 1) / cfg.steps
        unlabelled, labelled = self.unlabelled(run), "target_labelled" in batch
        x_s, y_s = batch["source"]
        batches, domains = ([x_s, batch["target"][0]], ["source", "target"]) if unlabelled else ([], [])
        if labelled:
            x_l, y_l = batch["target_labelled"]
            batches, domains = [*batches, x_l], [*domains, "target"]
        reversed_parts = (1,) if unlabelled and m.adapter.reversed_target_logits else ()  # OSBP's target batch
        features, logits = joint_forward(m, batches, domains, len(x_s) if unlabelled else 0,
                                         self.fine_tuning.extractor_trains(step - 1), reversed_parts)
        values: dict[str, float | Tensor] = {}
        if unlabelled:
            task = F.cross_entropy(logits[0], y_s, weight=class_weight(m.adapter, logits[0]))  # PADA's weights
            if cfg.source_weight != 1.0:
                task = cfg.source_weight * task
        else:
            task = logits[0].new_zeros(())
        align = Alignment(task.new_zeros(()))
        if unlabelled and with_adapter:
            align = alignment(m, run.dist, run.device.type, features[0], features[1], logits[0], logits[1], y_s, progress)
        if labelled:
            target_loss = F.cross_entropy(logits[-1], y_l)
            task = task + target_loss
            values["loss/target_labelled"] = target_loss.detach()
        if log:
            if unlabelled:
                values["acc/source_batch"] = (logits[0].argmax(1) == y_s).float().mean()
            values.update({f"adapter/{k}": v for k, v in align.scalars.items()})
            values.update(self.fine_tuning.trainable_flags(step - 1))
        return task, align, values

    def check(self, config: Any) -> None:
        if config.train.sam_rho > 0 and not sharpness_aware(self):
            raise DAError(f"config key train.sam_rho={config.train.sam_rho} makes the adapt stage's step sharpness-aware "
                          f"(SDAT), and stage {self.name!r} trains in its own way; set train.sam_rho: 0")

    def after_step(self, ctx: "StageContext", step: int) -> None:
        if self.fine_tuning is not None and self.fine_tuning.unfreezing_at(step):  # before this step's checkpoint
            unfreeze(ctx, self.fine_tuning, ctx.run.config.train.lr, step)

    def after_evaluation(self, ctx: "StageContext", step: int) -> bool:
        if ctx.run.config.train.early_stopping is None:
            return False
        stop = track_best(ctx, step) and step < ctx.steps
        if stop:
            ctx.run.early_stopping.stopped_at = step
        return stop

    def end(self, ctx: "StageContext", last: int) -> None:
        run = ctx.run
        if not run.dist.main:  # rank 0 evaluates and restores
            return
        if ctx.steps == 0:
            record_evaluation(run, self.name, run.eval_offset(ctx.index), run.global_offset(ctx.index))
            if run.config.train.early_stopping is not None:  # the one evaluation is the best: best.pt holds it
                track_best(ctx, 0)
        if run.config.train.early_stopping is not None and run.evaluations.history:
            restore_best(run)


def class_weight(adapter, logits: Tensor) -> Tensor | None:
    """The adapter's per-class weights of the source cross-entropy, padded with 1 for extra head columns."""
    w = adapter.class_weight()
    if w is None or len(w) == logits.shape[1]:
        return w
    return torch.cat([w, w.new_ones(logits.shape[1] - len(w))])


def sharpness_aware(stage: Stage) -> bool:
    """The stage runs the adapt stage's joint step, which ``train.sam_rho`` > 0 makes SDAT's."""
    return isinstance(stage, Adapt) and type(stage).step is Adapt.step


def unfreeze(ctx: "StageContext", fine_tuning: FineTuning, lr: float, done: int) -> list[str]:
    """Gradual unfreezing, at the end of step ``done``: the groups that train from the next step join
    the optimizer, at the learning rate the schedule gives now; returns their names."""
    optimizer, scheduler, names = ctx.optimizers["main"], ctx.schedulers["main"], ctx.group_names["main"]
    joined = []
    for group in fine_tuning.unfreezing_at(done):
        if group.name in names:  # a run resumed at ``done`` built its optimizer with it
            continue
        group.module.requires_grad_(True)
        group.module.train(True)
        base = lr * group.lr_mult
        optimizer.add_param_group({"params": [p for p in group.module.parameters()], "lr": base, "initial_lr": base})
        scheduler.base_lrs.append(base)
        scheduler.lr_lambdas.append(scheduler.lr_lambdas[0])
        optimizer.param_groups[-1]["lr"] = base * scheduler.lr_lambdas[0](scheduler.last_epoch)
        names.append(group.name)
        joined.append(group.name)
    return joined

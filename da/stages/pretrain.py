"""Source pretraining: extractor + head on labelled source images (or loaded from a checkpoint)."""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from da.checkpoint import load_checkpoint
from da.data import Sampler
from da.data.augment import RandomAffine
from da.errors import DAError
from da.models.domain_norm import shared_state
from da.registry import register_stage
from da.stages.augmentation import augmentation
from da.stages.base import OptimSettings, ParamGroup, Stage, Update
from da.train.run import Run, StageContext


@register_stage("pretrain")
class Pretrain(Stage):
    """Source-only training of extractor and head (``pretrain:`` section), or ``pretrain.checkpoint``'s weights."""

    label = "pretraining"
    description = "source-only training of extractor and head, or pretrain.checkpoint's weights"
    evaluates = False
    timed = False
    trains_on_source = True
    checkpoint_at_start = False
    checkpoint_at_end = False
    logs_lr = False
    shown = {"loss": "pretrain/loss"}

    def steps(self, run: "Run") -> int:
        cfg = run.config.pretrain
        return 0 if cfg.checkpoint else cfg.steps

    def settings(self, run: "Run") -> OptimSettings:
        # Pretraining always fine-tunes the extractor; train.extractor_lr_mult is the adaptation stage's.
        t = run.config.train
        return OptimSettings(run.config.pretrain.lr, t.momentum, t.weight_decay, t.nesterov, t.lr_schedule)

    def optimizers(self, run: "Run", done: int) -> dict[str, list[ParamGroup]]:
        m = run.model
        return {"main": [ParamGroup("extractor", m.extractor), ParamGroup("head", m.head)]}

    def samplers(self, run: "Run") -> dict[str, "Sampler"]:
        return {"source": run.sampler(run.domains.source_train, run.config.pretrain.batch_size, source_augmentation(run))}

    def begin(self, ctx: "StageContext") -> None:
        if ctx.run.config.pretrain.checkpoint:
            load_pretrained(ctx.run)

    def step(self, ctx: "StageContext", step: int, batch: dict[str, tuple[Tensor, Tensor]], log: bool) -> Iterator[Update]:
        m = ctx.run.model
        x, y = batch["source"]
        loss = F.cross_entropy(m.head(m.extractor(x)), y, label_smoothing=ctx.run.config.pretrain.label_smoothing)
        yield Update(loss, scalars={"pretrain/loss": loss.detach()} if log else {})

    def end(self, ctx: "StageContext", last: int) -> None:
        run = ctx.run
        cfg = run.config.pretrain
        if (not cfg.checkpoint and cfg.steps == 0) or not run.dist.main:
            return
        accs = run.model.evaluate(run.domains, adapted=False)
        run.log.scalars({f"pretrain/{k}": v for k, v in accs.items()}, cfg.steps)
        run.log.metrics_row({"stage": "pretrain", "step": cfg.steps, **accs})
        run.summary.update({f"pretrain_{k}": v for k, v in accs.items()})


def source_augmentation(run: "Run") -> RandomAffine | None:
    """``data.augment``'s transform of source pretraining batches, if it augments the source."""
    return augmentation(run, "source", run.domains.source_train)


def load_pretrained(run: "Run") -> None:
    """``pretrain.checkpoint``: another run's extractor (and head, with ``pretrain.load: all``)."""
    cfg, m = run.config.pretrain, run.model
    loaded = load_checkpoint(cfg.checkpoint, run.device)
    try:
        weights = loaded["extractor"] if m.domain_norms else shared_state(loaded["extractor"], m.extractor)
        m.extractor.load_state_dict(weights)
    except (KeyError, RuntimeError) as exc:
        raise DAError(f"pretrain.checkpoint {cfg.checkpoint} does not fit model.backbone "
                      f"{run.config.model.backbone} ({str(exc).splitlines()[0]})") from None
    if cfg.load == "all":  # else: a new head for a new task, trained from its initialisation
        try:
            m.head.load_state_dict(loaded["head"])
        except (KeyError, RuntimeError):
            shape = tuple(loaded.get("head", {}).get("weight", torch.empty(0)).shape)
            raise DAError(f"pretrain.checkpoint {cfg.checkpoint} has a head of shape {shape}, but this task has "
                          f"{run.domains.num_classes} classes; set pretrain.load: extractor to train a new head") from None

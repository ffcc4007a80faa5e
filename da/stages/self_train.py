"""Self-training on target images: a teacher labels them, a student learns the confident labels.

FixMatch (Sohn et al., NeurIPS 2020): the teacher labels a weakly augmented view of each target
image; where its confidence passes a threshold, the student is trained with cross-entropy to that
label on a strongly augmented view (``da.data.strong_augment``). The teacher is the exponential
moving average of the student (mean teacher, Tarvainen & Valpola 2017; self-ensembling for domain
adaptation, French et al., ICLR 2018), or the frozen source model (``teacher: source``). French et
al.'s consistency term (squared difference of the student's and teacher's class probabilities) is
``consistency_weight``. Thresholds are one fixed confidence, or per class and self-adaptive as in
FreeMatch (Wang et al., ICLR 2023: a global threshold that tracks the teacher's mean confidence,
scaled per class by its mean predicted probability), so rare or hard classes are not starved.

The stage composes with any adapter that adds a loss (``adapter: [{name: cdan}, {name: mcc}]``):
each step also computes the source cross-entropy (``source_weight``) and the adapter's loss on
source and strongly augmented target features, as the adaptation stage does.

Masked image consistency (MIC; Hoyer et al., CVPR 2023, ``cls/examples/cdan_mcc_sdat_masking.py``),
``mask_ratio`` > 0: the teacher's view of each target image, with random patches of ``mask_block``
pixels hidden (``da.data.patch_mask``), goes through the student, which learns the teacher's
pseudo-label of the whole image, every image weighted by the teacher's confidence (MIC's
``pseudo_label_weight: prob``; no threshold), times ``mask_weight``. The student must then use the
context of what it sees to recognise the digit.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from da.data import Sampler
from da.data.augment import RandomAffine
from da.data.patch_mask import PatchMask, check_mask
from da.data.strong_augment import StrongAugment
from da.errors import DAError
from da.registry import register_stage
from da.stages.augmentation import augmentation
from da.stages.base import OptimSettings, ParamGroup, Stage, Update
from da.stages.joint import alignment, joint_forward
from da.stages.teacher import EMATeacher
from da.train.run import Run, StageContext
from da.config.search_space import log_uniform, uniform

TEACHERS = ("ema", "source")
FINAL_MODELS = ("student", "teacher")
THRESHOLDS = ("fixed", "adaptive")


@register_stage("self_train")
class SelfTrain(Stage):
    """FixMatch-style self-training: teacher (EMA or frozen source) labels weak views, student learns strong views."""

    search_space = {"stage.threshold": uniform(0.8, 0.99), "stage.lr": log_uniform(1e-3, 5e-2)}

    label = "self-training"
    description = "self-training: a teacher (EMA or source) labels weak views, the student learns strong ones (FixMatch)"
    needs_source_model = True
    shown = {"loss": "loss/total", "mask": "self_train/mask_rate"}

    def __init__(self, steps: int = 2000, batch_size: int = 64, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 5e-4, lr_schedule: str = "inv", teacher: str = "ema", decay: float = 0.999,
                 threshold: float = 0.95, thresholds: str = "fixed", threshold_momentum: float = 0.999,
                 pseudo_weight: float = 1.0, consistency_weight: float = 0.0, source_weight: float = 1.0,
                 weak_translate: float = 0.0625, strong_rotate: float = 20.0,
                 strong_scale: Sequence[float] = (0.8, 1.2), strong_translate: float = 0.1,
                 cutout: float = 0.35, final_model: str = "student", mask_ratio: float = 0.0, mask_block: int = 7,
                 mask_weight: float = 1.0, mask_confidence: bool = True) -> None:
        if teacher not in TEACHERS:
            raise DAError(f"stage self_train: teacher must be one of {', '.join(TEACHERS)}, got {teacher!r}")
        if thresholds not in THRESHOLDS:
            raise DAError(f"stage self_train: thresholds must be one of {', '.join(THRESHOLDS)}, got {thresholds!r}")
        if final_model not in FINAL_MODELS:
            raise DAError(f"stage self_train: final_model must be one of {', '.join(FINAL_MODELS)}, got {final_model!r}")
        if final_model == "teacher" and teacher != "ema":
            raise DAError("stage self_train: final_model: teacher needs teacher: ema (a frozen source teacher is the "
                          "model the stage started from); drop final_model or set teacher: ema")
        if not 0.0 <= decay <= 1.0:
            raise DAError(f"stage self_train: decay must be in [0, 1], got {decay}")
        if not 0.0 <= threshold <= 1.0:
            raise DAError(f"stage self_train: threshold must be in [0, 1], got {threshold}")
        check_mask(mask_ratio, mask_block, "stage self_train")
        if mask_weight < 0:
            raise DAError(f"stage self_train: mask_weight must not be negative, got {mask_weight}")
        self.mask_ratio, self.mask_block, self.mask_weight = float(mask_ratio), mask_block, mask_weight
        self.mask_confidence = mask_confidence
        self.n_steps, self.batch_size = steps, batch_size
        self.optim = OptimSettings(lr, momentum, weight_decay, True, lr_schedule)
        self.teacher_kind, self.decay, self.final_model = teacher, decay, final_model
        self.threshold, self.thresholds, self.threshold_momentum = threshold, thresholds, threshold_momentum
        self.pseudo_weight, self.consistency_weight, self.source_weight = pseudo_weight, consistency_weight, source_weight
        self.weak_translate = weak_translate
        self.strong = dict(rotate=strong_rotate, scale=tuple(strong_scale), translate=strong_translate, cutout=cutout)
        self.teacher: EMATeacher | None = None
        self.global_conf: Tensor | None = None   # FreeMatch: EMA of the teacher's mean top confidence
        self.class_prob: Tensor | None = None    # FreeMatch: EMA of the teacher's mean class probabilities

    def steps(self, run: "Run") -> int:
        return self.n_steps

    def settings(self, run: "Run") -> OptimSettings:
        return self.optim

    def reads_source(self, run: "Run") -> bool:
        return self.source_weight > 0 or run.model.adapter.aligns_by_gradient

    def optimizers(self, run: "Run", done: int) -> dict[str, list[ParamGroup]]:
        m = run.model
        if self.teacher is None:  # a copy of the model as the stage starts (a resumed run then loads its state)
            self.teacher = EMATeacher({"extractor": m.extractor, "head": m.head},
                                      decay=1.0 if self.teacher_kind == "source" else self.decay)
        return {"main": [ParamGroup("extractor", m.extractor), ParamGroup("head", m.head),
                         ParamGroup("adapter", m.adapter)]}

    def samplers(self, run: "Run") -> dict[str, "Sampler"]:
        d, bs = run.domains, self.batch_size
        out = {}
        if self.reads_source(run):
            out["source"] = run.sampler(d.source_train, bs, augmentation(run, "source", d.source_train))
        out["target"] = run.sampler(d.target_train, bs)  # the views are drawn in ``step``
        return out

    def _views(self, run: "Run") -> tuple[RandomAffine, StrongAugment]:
        if not hasattr(self, "_weak"):
            self._weak = RandomAffine(0.0, (1.0, 1.0), self.weak_translate, run.generator)
            s = self.strong
            self._strong = StrongAugment(run.generator, rotate=s["rotate"], scale=s["scale"],
                                         translate=s["translate"], cutout=s["cutout"])
            self._mask = PatchMask(self.mask_ratio, self.mask_block, run.generator)
        return self._weak, self._strong

    def begin(self, ctx: "StageContext") -> None:
        ctx.run.start_target_norms()
        self._modes(ctx.run)

    def resumed(self, ctx: "StageContext") -> None:
        self._modes(ctx.run)

    def _modes(self, run: "Run") -> None:
        for module in run.model.modules():
            module.train()

    def images_per_step(self, run: "Run") -> int:
        return self.batch_size * (2 if self.reads_source(run) else 1)

    def class_thresholds(self, probs: Tensor) -> Tensor:
        """Per-class confidence thresholds for this batch of teacher probabilities (updated first)."""
        k = probs.shape[1]
        if self.thresholds == "fixed":
            return probs.new_full((k,), self.threshold)
        if self.global_conf is None:
            self.global_conf = torch.tensor(1.0 / k)
            self.class_prob = torch.full((k,), 1.0 / k)
        mom = self.threshold_momentum
        self.global_conf = mom * self.global_conf + (1 - mom) * probs.max(1).values.mean().cpu()
        self.class_prob = mom * self.class_prob + (1 - mom) * probs.mean(0).cpu()
        return (self.global_conf * self.class_prob / self.class_prob.max()).to(probs.device)

    def step(self, ctx: "StageContext", step: int, batch: dict[str, tuple[Tensor, Tensor]], log: bool) -> Iterator[Update]:
        run, m = ctx.run, ctx.run.model
        weak, strong = self._views(run)
        x_t, _ = batch["target"]
        x_weak = weak(x_t)
        with torch.no_grad():
            teacher_probs = self.teacher(x_weak).softmax(1)
        confidence, pseudo = teacher_probs.max(1)
        mask = (confidence >= self.class_thresholds(teacher_probs)[pseudo]).float()
        x_strong = strong(x_t)
        source = "source" in batch
        batches, domains = ([batch["source"][0], x_strong], ["source", "target"]) if source else ([x_strong], ["target"])
        features, logits = joint_forward(m, batches, domains, len(batches[0]) if source else 0)
        logits_t = logits[-1]
        pseudo_loss = (F.cross_entropy(logits_t, pseudo, reduction="none") * mask).mean()
        total = self.pseudo_weight * pseudo_loss
        scalars: dict[str, Any] = {}
        if self.consistency_weight > 0:
            consistency = (logits_t.softmax(1) - teacher_probs).pow(2).sum(1).mean()
            total = total + self.consistency_weight * consistency
            scalars["self_train/consistency"] = consistency.detach()
        if self.mask_ratio > 0:
            masked = self.masked_consistency(m, x_weak, pseudo, confidence)
            total = total + self.mask_weight * masked
            scalars["self_train/masked_ce"] = masked.detach()
        if source:
            y_s = batch["source"][1]
            task = F.cross_entropy(logits[0], y_s)
            align = alignment(m, run.dist, run.device.type, features[0], features[-1], logits[0], logits_t, y_s,
                              (step - 1) / max(ctx.steps, 1))
            total = total + self.source_weight * task + align.loss
            scalars.update({"loss/task": task.detach(), "loss/adapter": align.loss.detach(),
                            **{f"adapter/{k}": v for k, v in align.scalars.items()}})
        if log:
            scalars.update({"loss/total": total.detach(), "self_train/pseudo_label_ce": pseudo_loss.detach(),
                            "self_train/mask_rate": mask.mean(), "self_train/teacher_confidence": confidence.mean()})
        yield Update(total, scalars=scalars if log else {})

    def masked_consistency(self, m: Any, x_weak: Tensor, pseudo: Tensor, confidence: Tensor) -> Tensor:
        """MIC's loss: the student's cross-entropy on the masked teacher view against the teacher's
        labels, weighted by the teacher's confidence (``mask_confidence``), averaged over the batch."""
        _, logits = joint_forward(m, [self._mask(x_weak)], ["target"], 0)
        ce = F.cross_entropy(logits[0], pseudo, reduction="none")
        return (confidence * ce).mean() if self.mask_confidence else ce.mean()

    def after_step(self, ctx: "StageContext", step: int) -> None:
        m = ctx.run.model
        students = {"extractor": m.extractor, "head": m.head}
        self.teacher.update(students)
        if step == ctx.steps and self.final_model == "teacher":
            # The mean teacher is the stage's result (Tarvainen & Valpola evaluate it): copied into the
            # model before the last evaluation and checkpoint, so everything after the stage reads it.
            self.teacher.copy_to(students)

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher.state_dict() if self.teacher is not None else None,
                "global_conf": self.global_conf, "class_prob": self.class_prob}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and state.get("teacher") is not None:
            self.teacher.load_state_dict(state["teacher"])
            self.global_conf, self.class_prob = state["global_conf"], state["class_prob"]

"""``cotta``: continual test-time adaptation (Wang et al., "Continual Test-Time Domain Adaptation",
CVPR 2022; github.com/qinenergy/cotta, ``cifar/cotta.py``).

Three copies of the source model: the student, which trains; a mean teacher, the exponential moving
average of the student (``mt_alpha``); and the anchor, the source model, frozen. For each test batch:

1. the anchor predicts; if its mean top probability is below ``ap``, the teacher's prediction is the
   average of its predictions on ``n_augmentations`` augmented copies of the batch
   (``da.data.tta_augment``), else its prediction on the batch;
2. the student takes an Adam step on the cross-entropy from the teacher's soft prediction to its own
   (CoTTA's ``softmax_entropy(student, teacher)``), every parameter trained;
3. the teacher moves towards the student by EMA, and each weight element of the student is restored
   to its source value with probability ``rst`` (stochastic restore, against forgetting).

The prediction returned and scored is the teacher's of step 1, made before the update (CoTTA returns
``outputs_ema``). Like CoTTA, all three normalise with the test batch's statistics (CoTTA runs its
models in train mode without running statistics; here ``TestTimeBatchNorm`` does it and dropout
stays off).

Defaults are CoTTA's CIFAR-10-C config (``cifar/cfgs/cifar10/cotta.yaml``): Adam, lr 1e-3, betas
(0.9, 0.999), no weight decay, one step per batch, ``mt_alpha`` 0.999, ``rst`` 0.01, ``ap`` 0.92
(CIFAR-100-C uses 0.72: the threshold follows the source model's confidence, a choice the paper's
supplementary discusses); 32 augmentations (fixed in ``cotta.py``). Digits take the CIFAR-10
values, the closest setting (ten classes, small images). One change: no horizontal flip by default
(``hflip`` 0; CoTTA flips CIFAR images with probability 0.5), since a mirrored digit is no digit.
Stochastic restore covers every parameter of the model (CoTTA's, those named weight or bias: all of
a CNN's). The augmented copies are computed only when they are used (CoTTA computes them for every
batch and discards them when the anchor is confident): the same predictions, fewer random draws.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import torch
from torch import Tensor, nn

from da.data.tta_augment import CoTTAAugment
from da.errors import DAError
from da.models.test_time_norm import copy_state
from da.registry import register_stage
from da.stages.base import ParamGroup, Update
from da.stages.test_time import GradientTestTimeStage
from da.train.model import Model
from da.train.run import Run, StageContext

#: Added to the run's seed for the stage's generator (augmentations, stochastic restore).
SEED_OFFSET = 7919


def trained_parts(model: Model) -> dict[str, nn.Module]:
    """The parts of the model that predict (every part but the adapter, a loss the stream never reads)."""
    return {name: part for name, part in model.parts().items() if name != "adapter"}


def frozen_copy(model: Model) -> Model:
    """A copy of ``model`` that trains nothing, in eval mode (dropout off; the adapter shared, not copied)."""
    twin = copy.deepcopy(model, {id(model.adapter): model.adapter})
    for part in trained_parts(twin).values():
        part.requires_grad_(False)
        part.eval()
    return twin


def predict(model: Model, x: Tensor) -> Tensor:
    return model.head(model.embed(x, "target"))


def soft_cross_entropy(student: Tensor, teacher: Tensor) -> Tensor:
    """Per sample, -sum_k softmax(teacher)_k log softmax(student)_k (CoTTA's ``softmax_entropy(x, x_ema)``)."""
    return -(teacher.softmax(1) * student.log_softmax(1)).sum(1)


@torch.no_grad()
def ema_update(teacher: Model, student: Model, alpha: float) -> None:
    """teacher <- alpha * teacher + (1 - alpha) * student, parameter by parameter (CoTTA's ``update_ema_variables``)."""
    teachers = teacher.parts()
    for name, part in trained_parts(student).items():
        for p_t, p_s in zip(teachers[name].parameters(), part.parameters()):
            p_t.mul_(alpha).add_(p_s.detach(), alpha=1.0 - alpha)


@torch.no_grad()
def stochastic_restore(student: Model, source: Model, rst: float, generator: torch.Generator) -> None:
    """Each weight element of ``student`` back to ``source``'s with probability ``rst``, drawn from ``generator``."""
    sources = source.parts()
    for name, part in trained_parts(student).items():
        for p, p0 in zip(part.parameters(), sources[name].parameters()):
            mask = (torch.rand(p.shape, generator=generator) < rst).to(p.device)
            p.copy_(torch.where(mask, p0, p))


def input_normalisation(split: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std mapping the split's images to [0, 1] (``unit = x * std + mean``): a file-backed
    split's ``Normalise`` (x = u / std - mean / std), else da's in-memory [-1, 1] images (0.5, 0.5)."""
    normalise = getattr(getattr(split, "test_transform", None), "normalise", None)
    if normalise is None:
        return (0.5,), (0.5,)
    std = tuple(s / 255.0 for s in normalise.scale)
    return tuple(shift * s for shift, s in zip(normalise.shift, std)), std


@register_stage("cotta")
@dataclass(eq=False)
class CoTTA(GradientTestTimeStage):
    """Mean teacher, augmentation-averaged when the anchor is unsure, stochastic restore (Wang et al. 2022)."""

    lr: float = 1e-3
    mt_alpha: float = 0.999
    rst: float = 0.01
    ap: float = 0.92
    n_augmentations: int = 32
    hflip: float = 0.0

    description: ClassVar[str] = ("CoTTA: EMA teacher, augmentation-averaged when the source is unsure; stochastic "
                                  "restore (Wang et al. 2022)")

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("mt_alpha", "rst", "ap", "hflip"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise DAError(f"stage cotta: {key} must be in [0, 1], got {getattr(self, key)}")
        if self.n_augmentations < 1:
            raise DAError(f"stage cotta: n_augmentations must be >= 1, got {self.n_augmentations} (ap: 0 never augments)")
        self.teacher: Model | None = None
        self.anchor: Model | None = None
        self.generator = torch.Generator()
        self.augment = CoTTAAugment(self.generator)
        self.last: dict[str, Any] = {}

    def check_data(self, config: Any, domains: Any) -> None:
        super().check_data(config, domains)
        shape = tuple(domains.target_test.input_shape)
        if self.ap > 0 and len(shape) != 3:
            raise DAError(f"stage cotta augments images (channels x height x width), but data.target "
                          f"{config.data.target} holds inputs of shape {'x'.join(map(str, shape))}; set the stage's "
                          f"ap: 0 (never augment) or use stage tent")

    def optimizers(self, run: "Run", done: int) -> dict[str, list[ParamGroup]]:
        if self.teacher is None:  # copies of the source model (a resumed run loads their state next)
            self.teacher, self.anchor = frozen_copy(run.model), frozen_copy(run.model)
            self.generator.manual_seed(run.config.seed + SEED_OFFSET)
            mean, std = input_normalisation(run.domains.target_test)
            self.augment = CoTTAAugment(self.generator, mean, std, self.hflip)
        return {"main": [ParamGroup(name, part) for name, part in trained_parts(run.model).items()]}

    def teacher_prediction(self, x: Tensor) -> Tensor:
        """The teacher's logits: averaged over augmented copies when the anchor's mean confidence is below ``ap``."""
        assert self.teacher is not None and self.anchor is not None
        with torch.no_grad():
            confidence = predict(self.anchor, x).softmax(1).max(1).values.mean()
            augmented = bool(confidence < self.ap)
            self.last.update({"cotta/anchor_confidence": confidence, "cotta/augmented": float(augmented)})
            if not augmented:
                return predict(self.teacher, x)
            return torch.stack([predict(self.teacher, self.augment(x)) for _ in range(self.n_augmentations)]).mean(0)

    def adapt(self, ctx: "StageContext", x: Tensor) -> Iterator[Update]:
        run = ctx.run
        student = self.forward(run, x)
        teacher = self.teacher_prediction(x)
        loss = soft_cross_entropy(student, teacher).mean()
        self.last["cotta/loss"] = loss.detach()
        yield Update(loss)  # the loop steps the student's optimizer, then comes back here
        assert self.teacher is not None and self.anchor is not None
        ema_update(self.teacher, run.model, self.mt_alpha)
        stochastic_restore(run.model, self.anchor, self.rst, self.generator)
        return teacher

    def restore(self, ctx: "StageContext") -> None:
        """A reset: student, teacher and anchor back to the source; the generator runs on (rewound, it
        would draw the same augmentations and restore masks batch after batch)."""
        state = self.generator.get_state()
        super().restore(ctx)
        self.generator.set_state(state)

    def scalars(self) -> dict[str, Any]:
        return dict(self.last)

    def method_state(self) -> dict[str, Any]:
        if self.teacher is None or self.anchor is None:
            return {}
        return {"teacher": {name: copy_state(part) for name, part in trained_parts(self.teacher).items()},
                "anchor": {name: copy_state(part) for name, part in trained_parts(self.anchor).items()},
                "generator": self.generator.get_state()}

    def load_method_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        assert self.teacher is not None and self.anchor is not None
        for key, model in (("teacher", self.teacher), ("anchor", self.anchor)):
            for name, part in trained_parts(model).items():
                part.load_state_dict(state[key][name])
        self.generator.set_state(state["generator"])

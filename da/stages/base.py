"""The stage interface: one part of a run (source pretraining, closed-form fit, joint adaptation,
self-training, source-free adaptation, ...), run by the loop's shared skeleton (``da.train.skeleton``).

A stage says how many steps it takes, what it trains (named optimizers over parameter groups), which
batches each step draws, and what one step computes: ``step`` yields ``Update``s, and the skeleton
does the rest (stop signal, non-finite check, backward, optimizer and schedule, logging, evaluation,
checkpoint, exact resume). Settings are constructor keyword arguments with defaults, set from the
config's ``stages`` list (``{name: shot, epochs: 15}``), as an adapter's are from ``adapter``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

from torch import Tensor, nn

from da.config.search_space import Param
from da.data import Sampler
from da.train.run import Run, StageContext
from da.train.stage import ParamGroup, Update

__all__ = ["OptimSettings", "ParamGroup", "Stage", "Update"]


@dataclass
class OptimSettings:
    """Optimizer settings of a stage (SGD unless ``optimizer`` says adam) and its learning-rate schedule (``da.train.skeleton.lr_factor``)."""

    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: str = "inv"
    optimizer: str = "sgd"   # or "adam" (momentum and nesterov unused; betas)
    betas: tuple[float, float] = (0.9, 0.999)
    #: > 0: the optimizer is SAM around the base one, this radius (``da.train.sam``; 0: the base alone).
    sam_rho: float = 0.0
    sam_adaptive: bool = False  # ASAM (Kwon et al. 2021): the radius scaled by each weight's magnitude


class Stage:
    """One stage of a run. Subclasses are registered with ``@register_stage("name")``."""

    #: The registered name (set by the registry's decorator); also the ``stage`` of metrics rows.
    name: ClassVar[str] = ""
    #: One line, shown by ``da stages`` (else the docstring's first line).
    description: ClassVar[str] = ""
    #: ``da tune``'s ranges for what shapes its training (``da.config.search_space``): full config keys
    #: (``train.lr``), or ``stage.<argument>`` for an argument of its own entry in ``stages:``.
    search_space: ClassVar[dict[str, Param]] = {}
    #: How messages name it ("pretraining step 40").
    label: ClassVar[str] = "stage"
    #: Evaluated every ``train.eval_every`` steps with the adapted model (history, selection).
    evaluates: ClassVar[bool] = True
    #: It adapts on the target test split as a stream (``da.stages.test_time``): a list of target
    #: domains is for it, and a run holds at most one.
    test_time: ClassVar[bool] = False
    #: Its time and images count toward ``train_s`` and ``train_imgs_per_s``.
    timed: ClassVar[bool] = True
    #: It trains on labelled source images (a later stage that needs a source model may follow it).
    trains_on_source: ClassVar[bool] = False
    #: It needs a model trained on the source before it (an earlier stage with ``trains_on_source``,
    #: or ``pretrain.checkpoint``); a config without one is refused.
    needs_source_model: ClassVar[bool] = False
    #: Saves a checkpoint when it starts afresh, after ``begin`` (a kill before its first periodic
    #: checkpoint then resumes here, not at an earlier stage).
    checkpoint_at_start: ClassVar[bool] = True
    #: Saves a checkpoint after its last step (pretraining does not: the stage after it saves when it
    #: starts, and pretraining's end writes its evaluation row after that step).
    checkpoint_at_end: ClassVar[bool] = True
    #: Logs ``lr/<group>`` of its optimizers at each logging step.
    logs_lr: ClassVar[bool] = True
    #: Progress-bar postfix: shown name -> scalar tag.
    shown: ClassVar[dict[str, str]] = {"loss": "loss/total"}
    #: Named slots of the model (``da.train.model.SLOTS``) this stage fills (ADDA: a target encoder)
    #: and those it needs an earlier stage to have filled; a config that lists it before the stage
    #: that fills them is refused.
    fills_slots: ClassVar[tuple[str, ...]] = ()
    needs_slots: ClassVar[tuple[str, ...]] = ()

    def steps(self, run: "Run") -> int:
        """Optimisation steps of this stage (0: it only does its ``begin`` and ``end``)."""
        return 0

    def settings(self, run: "Run") -> OptimSettings:
        t = run.config.train
        return OptimSettings(t.lr, t.momentum, t.weight_decay, t.nesterov, t.lr_schedule, t.optimizer, tuple(t.betas))

    def optimizers(self, run: "Run", done: int) -> dict[str, list[ParamGroup]]:
        """Named optimizers, each over parameter groups, for a stage that has trained ``done`` steps."""
        return {}

    def samplers(self, run: "Run") -> dict[str, "Sampler"]:
        """Training batches each step draws, by key, in the order they are drawn (``run.generator``)."""
        return {}

    def check(self, config: Any) -> None:
        """Cross-field checks of the run's config this stage needs (a ``DAError`` naming the key to
        change), run before a run folder exists."""

    def fill_slots(self, run: "Run", fresh: bool) -> None:
        """Fill the model's slots this stage declares in ``fills_slots``. ``fresh``: the stage starts,
        before its optimizers are made: with their starting weights (a copy of the extractor, a fitted
        map, new heads). Not ``fresh``: a run resumes at or after this stage: their shapes only, the
        checkpoint's weights load next."""

    def owned(self) -> dict[str, nn.Module]:
        """Trainable modules the stage owns beyond the model's (ADDA's discriminator), by name: their
        gradients are averaged across ranks like the model's; their weights are in ``state_dict``."""
        return {}

    def begin(self, ctx: "StageContext") -> None:
        """Once, when the stage starts afresh (not on resume: its checkpoint at step 0 follows)."""

    def resumed(self, ctx: "StageContext") -> None:
        """When the stage resumes from its checkpoint (its state already loaded)."""

    def step(self, ctx: "StageContext", step: int, batch: dict[str, tuple[Tensor, Tensor]], log: bool) -> Iterator[Update]:
        """One training step: yield an ``Update`` per sub-step (scalars filled when ``log``)."""
        return iter(())

    def eval_every(self, run: "Run") -> int:
        """Steps between evaluations, ``train.eval_every`` (0: only after the last step)."""
        return run.config.train.eval_every

    def check_data(self, config: Any, domains: Any) -> None:
        """Checks that need the loaded splits (``da.domains.Domains``), before a run folder exists."""

    def after_step(self, ctx: "StageContext", step: int) -> None:
        """After the optimizers and schedules stepped, before any evaluation or checkpoint."""

    def after_evaluation(self, ctx: "StageContext", step: int) -> bool:
        """After the evaluation at ``step``; True stops the stage early."""
        return False

    def end(self, ctx: "StageContext", last: int) -> None:
        """After the last step (``last``: the last step done)."""

    def images_per_step(self, run: "Run") -> int:
        return 0

    def state_dict(self) -> dict[str, Any]:
        """Stage state beyond the model and optimizers that exact resume needs (a teacher, pseudo-labels)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

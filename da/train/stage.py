"""What the engine needs of a stage: the members ``da.train.skeleton.run_stage`` and ``Run`` read.

The engine runs stages without importing them (they sit a layer above it and import the engine):
``da.stages.base.Stage``, the base class every registered stage extends, has these members; this
protocol is the engine's side of that contract. The skeleton's shape (a step that yields updates
for one shared loop to apply) follows DomainBed's ``Algorithm.update`` (Gulrajani and Lopez-Paz 2021).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

from torch import Tensor, nn

from da.data import Sampler


@dataclass
class Update:
    """One optimisation sub-step: the loop checks ``loss`` is finite, zeroes the gradients of the
    optimizer named ``optimizer`` (or of each of several names: one loss that steps two optimizers,
    as MCD's step A does), back-propagates ``loss`` and steps the optimizer(s).

    ``perturb``: instead of stepping, the optimizer(s) take SAM's ascent step (``da.train.sam``:
    the weights move to the worst point of a small ball); the next update's step puts them back
    and steps with its gradient there. An optimizer without SAM (``sam_rho`` 0) is not moved."""

    loss: Tensor | None  # None: scalars only, nothing to back-propagate
    optimizer: str | tuple[str, ...] = "main"
    #: Scalars for TensorBoard (tag -> value), filled only on logging steps.
    scalars: dict[str, Any] = field(default_factory=dict)
    perturb: bool = False

    def optimizer_names(self) -> tuple[str, ...]:
        return (self.optimizer,) if isinstance(self.optimizer, str) else tuple(self.optimizer)


@dataclass
class ParamGroup:
    """Parameters an optimizer trains, under a name (for ``lr/<name>`` on TensorBoard), at
    ``lr_mult`` times the stage's learning rate."""

    name: str
    module: nn.Module
    lr_mult: float = 1.0


class Stage(Protocol):
    """One stage of a run as the skeleton sees it (see ``da.stages.base.Stage`` for each member's meaning).

    ``run`` is a ``da.train.run.Run`` and ``ctx`` a ``da.train.run.StageContext``; both hold stages,
    so naming their types here would make this module and run.py import each other: ``Any`` instead.
    """

    name: str
    label: str
    evaluates: bool
    test_time: bool
    timed: bool
    checkpoint_at_start: bool
    checkpoint_at_end: bool
    logs_lr: bool
    shown: dict[str, str]

    def steps(self, run: Any) -> int:
        """Optimisation steps of this stage."""

    def settings(self, run: Any) -> Any:
        """Optimizer settings and learning-rate schedule (``da.stages.base.OptimSettings``)."""

    def optimizers(self, run: Any, done: int) -> dict[str, list[ParamGroup]]:
        """Named optimizers, each over parameter groups."""

    def samplers(self, run: Any) -> dict[str, Sampler]:
        """Training batches each step draws, by key."""

    def fill_slots(self, run: Any, fresh: bool) -> None:
        """Fill the model's slots the stage declares (fresh: starting weights; else their shape)."""

    def owned(self) -> dict[str, nn.Module]:
        """Trainable modules of the stage's own, beyond the model's."""

    def begin(self, ctx: Any) -> None:
        """When the stage starts afresh."""

    def resumed(self, ctx: Any) -> None:
        """When the stage resumes from its checkpoint."""

    def step(self, ctx: Any, step: int, batch: dict[str, tuple[Tensor, Tensor]], log: bool) -> Iterator[Update]:
        """One training step: an ``Update`` per sub-step."""

    def eval_every(self, run: Any) -> int:
        """Steps between evaluations (0: only after the last)."""

    def after_step(self, ctx: Any, step: int) -> None:
        """After the optimizers and schedules stepped."""

    def after_evaluation(self, ctx: Any, step: int) -> bool:
        """After an evaluation; True stops the stage early."""

    def end(self, ctx: Any, last: int) -> None:
        """After the last step."""

    def images_per_step(self, run: Any) -> int:
        """Training images one step reads."""

    def state_dict(self) -> dict[str, Any]:
        """Stage state exact resume needs."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``'s state."""

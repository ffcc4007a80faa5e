"""What a run carries from stage to stage, typed: a small dataclass per concern.

Each is a stateful part of the run (``da.checkpoint.saved``): checkpoints collect its
``state_dict()`` and a resumed run loads it back. ``summary.json`` is made from them at the end
(``da.train.summary``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any

from da.domains import Domains
from da.models.domain_norm import start_target
from da.train.model import Model


class Record:
    """A dataclass whose checkpoint state is its fields, by name."""

    def state_dict(self) -> dict[str, Any]:
        """The fields' values by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Every field from ``state`` (as ``state_dict`` made it)."""
        for f in fields(self):  # type: ignore[arg-type]
            setattr(self, f.name, state[f.name])


@dataclass
class Evaluations(Record):
    """What the run's evaluations found (summary.json's accuracies, ``pretrain_*`` and history)."""

    #: The source-trained model's accuracies, measured as pretraining ends (``pretrain_<name>``).
    pretrain: dict[str, float] = field(default_factory=dict)
    #: The run's result: the latest evaluation's accuracies (early stopping: the restored one's).
    accuracies: dict[str, float] = field(default_factory=dict)
    #: Every evaluation after pretraining (step, accuracies, validator scores): what selection reads.
    history: list[dict[str, Any]] = field(default_factory=list)

    def add(self, step: int, accuracies: dict[str, float], scores: dict[str, float]) -> None:
        """The evaluation at ``step`` (numbered across the evaluating stages) becomes the latest."""
        self.accuracies = dict(accuracies)
        self.history.append({"step": step, **accuracies, "scores": scores})


@dataclass
class EarlyStopping(Record):
    """``train.early_stopping``'s outcome."""

    #: The adaptation step the stage stopped at before its end (None: it ran to its end).
    stopped_at: int | None = None
    #: What summary.json reports once the best evaluation is restored (its ``early_stopping``).
    restored: dict[str, Any] | None = None


@dataclass
class OnlineScores(Record):
    """A test-time stage's predictions on its stream, each scored when it was made, before the update
    that used its batch (summary.json's ``online_acc``, ``online_acc_by_domain``, ``online_acc_by_round``)."""

    #: The stream's domains, in ``data.target``'s order; empty until a test-time stage starts.
    names: list[str] = field(default_factory=list)
    #: Per domain, and per round of a stream that repeats its domains: correct predictions and images.
    correct: list[int] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    round_correct: list[int] = field(default_factory=list)
    round_seen: list[int] = field(default_factory=list)

    def start(self, names: list[str], rounds: int) -> None:
        self.names = list(names)
        self.correct, self.seen = [0] * len(names), [0] * len(names)
        self.round_correct, self.round_seen = [0] * rounds, [0] * rounds

    def add(self, domain: int, round_: int, correct: int, images: int) -> None:
        self.correct[domain] += correct
        self.seen[domain] += images
        self.round_correct[round_] += correct
        self.round_seen[round_] += images

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / max(sum(self.seen), 1)

    def summary(self) -> dict[str, Any]:
        """summary.json's online fields (none before a test-time stage ran)."""
        if not self.names:
            return {}
        out: dict[str, Any] = {"online_acc": round(self.accuracy, 6), "online_images": sum(self.seen),
                               "online_acc_by_domain": {name: round(c / max(n, 1), 6) for name, c, n
                                                        in zip(self.names, self.correct, self.seen)}}
        if len(self.round_seen) > 1:
            out["online_acc_by_round"] = [round(c / max(n, 1), 6) for c, n in zip(self.round_correct, self.round_seen)]
        return out


@dataclass
class Throughput:
    """Time and images of training: summary.json's ``wall_s``, ``train_s`` and ``train_imgs_per_s``."""

    #: Seconds in the steps of timed stages, without evaluations and checkpoints.
    train_seconds: float = 0.0
    #: Images this rank trained on in timed stages.
    images: int = 0
    #: Wall time of the sessions before a resume.
    earlier_wall_s: float = 0.0
    #: When this session started (``time.perf_counter``); not saved.
    started: float = field(default_factory=time.perf_counter)

    def wall_s(self) -> float:
        """Wall time of the run so far, over every session."""
        return self.earlier_wall_s + time.perf_counter() - self.started

    def state_dict(self) -> dict[str, Any]:
        return {"train_seconds": self.train_seconds, "images": self.images, "wall_s": self.wall_s()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_seconds, self.images, self.earlier_wall_s = state["train_seconds"], state["images"], state["wall_s"]


@dataclass
class TargetNorms(Record):
    """Per-domain batch norm: the target copies take the target train images' statistics (AdaBN, Li
    et al. 2016; ``da.models.domain_norm``), once, before the first stage that reads target images."""

    started: bool = False

    def start(self, model: Model, domains: Domains) -> None:
        """The target copies' statistics from ``domains``' target train images, unless taken already."""
        if self.started:
            return
        self.started = True
        with model.eval_mode():
            start_target(model.domain_norms, model.features, (x for x, _ in domains.target_train.batches(1000)))

"""What every stage of a run shares (``Run``) and one stage's moving parts (``StageContext``).

A checkpoint holds everything a resumed run needs to end exactly as an uninterrupted one would (on
CPU): the ``saved()`` fields of both, each a stateful part whose ``state_dict()`` the checkpoint
collects (``da.checkpoint``): the model, what the run carries between stages (``da.train.run_state``),
the gradient scaler, and the current stage's optimizers, schedules, samplers, own state and the
random number generators. A new stateful part is one more ``saved()`` field.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from da.checkpoint import FORMAT, collect, restore, save_checkpoint, saved, saved_parts
from da.config import Config, dump_yaml
from da.data import DataSplit, Sampler
from da.domains import Domains
from da.errors import DAError, Interrupted
from da.run_log import RunLog
from da.train.distributed import Dist
from da.train.model import Model
from da.train.precision import Precision
from da.train.run_state import EarlyStopping, Evaluations, OnlineScores, TargetNorms, Throughput
from da.train.seeding import GlobalRNG
from da.train.stage import Stage


@dataclass
class StageContext:
    """One stage's moving parts while it runs; its ``saved()`` fields are in each of its checkpoints
    (loaded back in this order: the random number generators last)."""

    run: "Run"
    stage: "Stage" = saved(key="stage_state")
    index: int  # the stage's place in the run's list
    steps: int
    optimizers: dict[str, torch.optim.Optimizer] = saved()
    schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR] = saved()
    samplers: dict[str, Sampler] = saved()
    group_names: dict[str, list[str]]  # per optimizer, its parameter groups' names (lr/<name> tags)
    first_step: int = 1
    rng: GlobalRNG = saved(GlobalRNG)

    @property
    def name(self) -> str:
        return self.stage.name

    def lr_scalars(self) -> dict[str, float]:
        """``lr/<group>`` for every parameter group (``lr/<optimizer>.<group>`` beside a second optimizer)."""
        out = {}
        for opt_name, optimizer in self.optimizers.items():
            prefix = "" if opt_name == "main" else f"{opt_name}."
            out.update({f"lr/{prefix}{n}": g["lr"] for n, g in zip(self.group_names[opt_name], optimizer.param_groups)})
        return out


@dataclass
class Run:
    """Everything the stages share: the run's inputs, its model, and what it carries between stages,
    typed (``da.train.run_state``); the ``saved()`` fields are its stateful parts."""

    config: Config
    run_dir: Path
    device: torch.device
    domains: Domains
    model: Model = saved()
    log: RunLog
    generator: torch.Generator
    stages: list["Stage"] = field(default_factory=list)
    evaluations: Evaluations = saved(Evaluations)
    early_stopping: EarlyStopping = saved(EarlyStopping)
    throughput: Throughput = saved(Throughput)
    target_norms: TargetNorms = saved(TargetNorms)
    online: OnlineScores = saved(OnlineScores)
    #: torch.distributed: this process's rank and the number of ranks (one process: rank 0 of 1).
    dist: Dist = field(default_factory=Dist)
    precision: Precision = saved(lambda: Precision("fp32", torch.device("cpu")))
    #: This session only: how messages name the last checkpoint, and the signal that asked to stop.
    last_checkpoint: str | None = None
    stop_signal: str | None = None
    #: This session only: called after each scored evaluation with (global step, scores); ``da tune``
    #: reports them to its pruner, which may stop the run by raising.
    on_evaluation: Callable[[int, dict[str, float]], None] | None = None

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def best_path(self) -> Path:
        """Early stopping: the checkpoint of the best evaluation so far (a complete, resumable one)."""
        return self.run_dir / "best.pt"

    def stage_steps(self) -> list[int]:
        return [stage.steps(self) for stage in self.stages]

    def global_offset(self, index: int) -> int:
        """Steps of the stages before ``index``: where stage ``index`` starts on TensorBoard's axis."""
        return sum(self.stage_steps()[:index])

    def eval_offset(self, index: int) -> int:
        """Steps of the evaluating stages before ``index``: evaluation rows number the steps of every
        stage after pretraining in one sequence (a lone adaptation stage's are its own steps)."""
        return sum(n for stage, n in zip(self.stages[:index], self.stage_steps()) if stage.evaluates)

    def sampler(self, split: "DataSplit", batch_size: int, augment: Any = None) -> Sampler:
        """Training batches of ``split`` drawn with the run's generator (this rank's shard of each)."""
        return split.sampler(batch_size, self.generator, augment, shard=self.dist.shard)

    def save(self, ctx: StageContext, step: int, path: Path | None = None) -> None:
        """A checkpoint of the run at ``step`` of ``ctx``'s stage (rank 0 writes it): where it was
        taken, the config, and the state of every stateful part of the run and of the stage."""
        if path is None:
            self.last_checkpoint = f"{ctx.stage.label} step {step}"
        if not self.dist.main:
            return
        save_checkpoint(path or self.checkpoint_path, {
            "stage": ctx.name, "stage_index": ctx.index, "step": step, "config": dump_yaml(self.config),
            **collect({**saved_parts(self), **saved_parts(ctx)}),
        })

    def resume(self, state: dict[str, Any], index: int) -> None:
        """The run's parts as checkpoint ``state`` (taken in stage ``index``) holds them; the stage's
        own parts load when it starts (``resume_stage``)."""
        if state["format"] != FORMAT:
            raise DAError(f"the checkpoint in {self.run_dir} was written by an earlier version of da ({state['format']}): "
                          f"its weights still load (pretrain.checkpoint, da eval) but the run cannot resume; start a new run")
        restore(saved_parts(self), state)
        self.last_checkpoint = f"{self.stages[index].label} step {state['step']}"

    def resume_stage(self, ctx: StageContext, state: dict[str, Any]) -> None:
        """The stage's parts as checkpoint ``state`` holds them; it continues after the checkpoint's step."""
        restore(saved_parts(ctx), state)
        ctx.first_step = state["step"] + 1

    def check(self, loss: Tensor, ctx: StageContext, step: int) -> None:
        """Stop on a non-finite loss (on any rank), naming the step and the checkpoint kept."""
        if self.dist.agree(not torch.isfinite(loss)):
            kept = (f"the last good checkpoint ({self.last_checkpoint}) is kept in {self.checkpoint_path}"
                    if self.last_checkpoint else "no checkpoint had been written yet")
            label = ctx.stage.label
            raise DAError(f"the {label} loss became {loss.item()} at {label} step {step}; training "
                          f"stopped and {kept}; lower the learning rate or the adapter's weight")

    def stop_if_asked(self, ctx: StageContext, done: int) -> None:
        if self.dist.agree(self.stop_signal is not None):
            self.stop_signal = self.stop_signal or "a signal to another rank"
            self.save(ctx, done)
            raise Interrupted(f"stopped by {self.stop_signal} after {ctx.stage.label} step {done}; checkpoint saved; "
                              f"continue with: da train --resume {self.run_dir}")

    def start_target_norms(self) -> None:
        """Per-domain batch norm: the target's statistics, once, before the first stage that reads target images."""
        self.target_norms.start(self.model, self.domains)


@contextmanager
def stop_on_signals(run: Run) -> Iterator[None]:
    """SIGTERM and Ctrl-C ask the loop to checkpoint and stop at the end of the current step. Off the
    main thread (a Ray Tune trial runs in one) the signals belong to the host and are left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask(signum: int, _frame: Any) -> None:
        run.stop_signal = signal.Signals(signum).name

    previous = {s: signal.signal(s, ask) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

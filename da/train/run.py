"""What every stage of a run shares (``Run``) and one stage's moving parts (``StageContext``).

A checkpoint holds everything a resumed run needs to end exactly as an uninterrupted one would (on
CPU): the model, the current stage's optimizers, schedules, samplers and own state, and the random
number generators.
"""
from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from da.checkpoint import save_checkpoint
from da.config import Config, dump_yaml
from da.data import DataSplit, Sampler
from da.domains import Domains
from da.errors import DAError, Interrupted
from da.models.domain_norm import start_target
from da.run_log import RunLog
from da.train.distributed import Dist
from da.train.model import Model
from da.train.precision import Precision
from da.train.seeding import rng_state, set_rng_state
from da.train.stage import Stage


@dataclass
class StageContext:
    """One stage's moving parts while it runs, saved in each of its checkpoints."""

    run: "Run"
    stage: "Stage"
    index: int  # the stage's place in the run's list
    steps: int
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR]
    samplers: dict[str, Sampler]
    group_names: dict[str, list[str]]  # per optimizer, its parameter groups' names (lr/<name> tags)
    first_step: int = 1

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
    """Everything the stages share."""

    config: Config
    run_dir: Path
    device: torch.device
    domains: Domains
    model: Model
    log: RunLog
    generator: torch.Generator
    stages: list["Stage"] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    last_checkpoint: str | None = None
    train_seconds: float = 0.0
    earlier_wall_s: float = 0.0  # wall time of the sessions before a resume
    started: float = field(default_factory=time.perf_counter)
    stop_signal: str | None = None
    #: Per-domain batch norm: the target's statistics were estimated (once, before the first stage
    #: that reads target images).
    target_norms_started: bool = False
    #: torch.distributed: this process's rank and the number of ranks (one process: rank 0 of 1).
    dist: Dist = field(default_factory=Dist)
    precision: Precision = field(default_factory=lambda: Precision("fp32", torch.device("cpu")))

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def best_path(self) -> Path:
        """Early stopping: the checkpoint of the best evaluation so far (a complete, resumable one)."""
        return self.run_dir / "best.pt"

    def wall_s(self) -> float:
        return self.earlier_wall_s + time.perf_counter() - self.started

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
        """A checkpoint of the run at ``step`` of ``ctx``'s stage (rank 0 writes it)."""
        if path is None:
            self.last_checkpoint = f"{ctx.stage.label} step {step}"
        if not self.dist.main:
            return
        m = self.model
        save_checkpoint(path or self.checkpoint_path, {
            "stage": ctx.name, "stage_index": ctx.index, "step": step, "config": dump_yaml(self.config),
            **m.state_dict(), "target_norms_started": self.target_norms_started,
            "optimizers": {k: o.state_dict() for k, o in ctx.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in ctx.schedulers.items()},
            "samplers": {k: s.state_dict() for k, s in ctx.samplers.items()},
            "stage_state": ctx.stage.state_dict(), "grad_scaler": self.precision.state_dict(),
            "rng": rng_state(), "summary": dict(self.summary),
            "train_seconds": self.train_seconds, "wall_s": self.wall_s(),
        })

    def resume_stage(self, ctx: StageContext, state: dict[str, Any]) -> None:
        for key, optimizer in ctx.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][key])
        for key, scheduler in ctx.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][key])
        for key, sampler in ctx.samplers.items():
            sampler.load_state_dict(state["samplers"][key])
        ctx.stage.load_state_dict(state.get("stage_state") or {})
        self.precision.load_state_dict(state.get("grad_scaler") or {})
        set_rng_state(state["rng"])
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
        """Per-domain batch norm: the target copies take the target train images' statistics (AdaBN),
        once, before the first stage that reads target images."""
        if self.target_norms_started:
            return
        self.target_norms_started = True
        m = self.model
        with m.eval_mode():
            start_target(m.domain_norms, m.features, (x for x, _ in self.domains.target_train.batches(1000)))


@contextmanager
def stop_on_signals(run: Run) -> Iterator[None]:
    """SIGTERM and Ctrl-C ask the loop to checkpoint and stop at the end of the current step."""
    def ask(signum: int, _frame: Any) -> None:
        run.stop_signal = signal.Signals(signum).name

    previous = {s: signal.signal(s, ask) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

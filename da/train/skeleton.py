"""The shared step skeleton every stage runs in: written once, whatever the stage computes.

    for step in stage's steps:
        stop signal? -> checkpoint and stop
        draw the stage's batches
        for each Update the stage yields: non-finite check, zero_grad, backward, its optimizer's step
        every schedule steps; log; evaluate; checkpoint

A step's time counts toward ``train_s`` (and images/s) without evaluation and checkpoints. The
structure follows the one-screen step of nanoGPT's train.py; a stage that owns several sub-steps
(ADDA, MCD) yields several updates, as DomainBed's ``Algorithm.update`` performs them.
"""
from __future__ import annotations

import math
import re
import time
import warnings
from typing import Any, Callable

import torch
from torch import Tensor

from da.train.stage import ParamGroup
from da.train.distributed import gradient_sync
from da.train.run import Run, StageContext
from da.train.sam import SAM
from da.train.selection import record_evaluation
from da.train.stage import Stage


def lr_factor(schedule: str, progress: float, step: int = 0) -> float:
    """Learning-rate multiplier at ``progress`` in [0, 1] (``step``: iterations done, for ``inv_step``)."""
    if schedule == "inv":  # Ganin et al. 2016: lr_p = lr_0 / (1 + 10 p)^0.75
        return (1.0 + 10.0 * progress) ** -0.75
    if schedule == "inv_step":  # Transfer-Learning-Library: lr_i = lr_0 (1 + 0.001 i)^-0.75, whatever the length
        return (1.0 + 0.001 * step) ** -0.75
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def make_optimizer(groups: list[ParamGroup], lr: float, settings: Any) -> tuple[torch.optim.Optimizer, list[str]]:
    """SGD (or Adam, ``settings.optimizer``) over the groups' trainable parameters, each at ``lr`` times
    its multiplier; wrapped in SAM (``da.train.sam``) when ``settings.sam_rho`` > 0."""
    param_groups, names = [], []
    for group in groups:
        params = [p for p in group.module.parameters() if p.requires_grad]
        if params:
            param_groups.append({"params": params, "lr": lr * group.lr_mult})
            names.append(group.name)
    if not param_groups:  # nothing trains (a 0-step stage): an empty group keeps SGD valid
        param_groups, names = [{"params": [], "lr": lr}], ["none"]
    if settings.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(param_groups, lr=lr, betas=settings.betas,
                                                            weight_decay=settings.weight_decay)
    else:
        optimizer = torch.optim.SGD(param_groups, lr=lr, momentum=settings.momentum, weight_decay=settings.weight_decay,
                                    nesterov=settings.nesterov and settings.momentum > 0)
    if settings.sam_rho > 0:
        optimizer = SAM(optimizer, settings.sam_rho, settings.sam_adaptive)
    return optimizer, names


def make_context(run: Run, index: int, done: int) -> StageContext:
    """The optimizers, schedules and samplers of stage ``index`` after ``done`` of its steps.

    Every parameter of the model is trainable when a stage builds its optimizers, as in a model just
    built: what a stage freezes (SHOT's head) stays frozen in that stage alone, and its optimizer is the
    same whether the run started the stage or resumed inside it."""
    stage = run.stages[index]
    steps = stage.steps(run)
    settings = stage.settings(run)
    for module in run.model.modules():
        module.requires_grad_(True)
    optimizers, schedulers, names = {}, {}, {}
    for key, groups in stage.optimizers(run, done).items():
        optimizers[key], names[key] = make_optimizer(groups, settings.lr, settings)
        schedulers[key] = torch.optim.lr_scheduler.LambdaLR(
            optimizers[key], lambda s: lr_factor(settings.schedule, s / max(steps, 1), s))
    samplers = stage.samplers(run) if steps > 0 else {}  # a 0-step stage draws nothing (its batch may not fit)
    return StageContext(run, stage, index, steps, optimizers, schedulers, samplers, names)


def start_stage(run: Run, index: int, state: dict[str, Any] | None) -> StageContext:
    """Stage ``index``'s context: begun afresh (and checkpointed at step 0 if the stage asks), or
    loaded from the checkpoint ``state`` taken inside it."""
    stage: Stage = run.stages[index]
    if state is None:
        stage.fill_slots(run, fresh=True)
    ctx = make_context(run, index, state["step"] if state is not None else 0)
    if state is not None:
        run.resume_stage(ctx, state)
        stage.resumed(ctx)
    else:
        stage.begin(ctx)
        if stage.checkpoint_at_start:
            run.save(ctx, 0)
    return ctx


def apply_updates(ctx: StageContext, step: int, batch: dict[str, Any], log: bool,
                  sync: Callable[[Tensor], Tensor]) -> dict[str, Any]:
    """One step of the stage: each update it yields checked, backpropagated and stepped by its
    optimizers, then the gradient scaler and every schedule; the updates' scalars."""
    run = ctx.run
    values: dict[str, Any] = {}
    updates = ctx.stage.step(ctx, step, batch, log)
    while True:
        with run.precision.autocast():
            update = next(updates, None)
        if update is None:
            break
        if update.loss is None:
            values.update(update.scalars)
            continue
        loss = sync(update.loss)
        run.check(loss, ctx, step)
        optimizers = [ctx.optimizers[name] for name in update.optimizer_names()]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        run.precision.backward(loss)
        for optimizer in optimizers:
            (run.precision.perturb if update.perturb else run.precision.step)(optimizer)
        values.update(update.scalars)
    run.precision.update()
    with warnings.catch_warnings():
        if step == ctx.first_step:  # a first step may yield no update (a test-time method's filter kept no
            # sample): its schedules count the step all the same, and torch's warning of a schedule
            # stepped before its optimizer (given on a schedule's first step only) is moot
            warnings.filterwarnings("ignore", re.escape("Detected call of `lr_scheduler.step()` before"), UserWarning)
        for scheduler in ctx.schedulers.values():
            scheduler.step()
    return values


def log_step(ctx: StageContext, global_step: int, values: dict[str, Any], log: bool) -> None:
    """The step's scalars (and learning rates) to TensorBoard at a logging step; the progress bar always."""
    run, stage = ctx.run, ctx.stage
    if not log:
        run.log.progress(1)
        return
    values = {k: float(v) for k, v in values.items()}
    if stage.logs_lr:
        values.update(ctx.lr_scalars())
    run.log.scalars(values, global_step)
    run.log.progress(1, **{shown: values[tag] for shown, tag in stage.shown.items() if tag in values})


def run_stage(run: Run, index: int, state: dict[str, Any] | None) -> None:
    """Stage ``index`` of the run, from its start or from the checkpoint ``state`` taken inside it."""
    ctx = start_stage(run, index, state)
    stage, cfg = ctx.stage, run.config.train
    offset, eval_offset = run.global_offset(index), run.eval_offset(index)
    run.log.describe(stage.name if stage.name != "adapt" else f"adapt:{run.config.adapter.name}")
    m = run.model
    sync = gradient_sync(run.dist, {**m.parts(), **stage.owned()}, run.device)
    tick = time.perf_counter()
    last = ctx.first_step - 1
    every = stage.eval_every(run)
    for step in range(ctx.first_step, ctx.steps + 1):
        if run.stop_signal or run.dist.on:  # with several ranks, every rank learns of a signal to one
            if stage.timed:
                run.throughput.train_seconds += time.perf_counter() - tick
            run.stop_if_asked(ctx, step - 1)
            tick = time.perf_counter()
        batch = {key: sampler.next() for key, sampler in ctx.samplers.items()}
        log = step % cfg.log_every == 0 or step == ctx.steps
        values = apply_updates(ctx, step, batch, log, sync)
        last = step
        if stage.timed:
            run.throughput.images += stage.images_per_step(run)
        log_step(ctx, offset + step, values, log)
        stage.after_step(ctx, step)
        evaluate = stage.evaluates and ((every > 0 and step % every == 0) or step == ctx.steps)
        checkpoint = (step % cfg.checkpoint_every == 0 and step < ctx.steps) or (step == ctx.steps and stage.checkpoint_at_end)
        stop = False
        if evaluate or checkpoint:
            if run.device.type == "cuda":
                torch.cuda.synchronize()
            if stage.timed:
                run.throughput.train_seconds += time.perf_counter() - tick
            if evaluate:  # rank 0 evaluates and decides; the others learn its decision
                if run.dist.main:
                    record_evaluation(run, stage.name, eval_offset + step, offset + step)
                    stop = stage.after_evaluation(ctx, step) and step < ctx.steps
                stop = run.dist.broadcast(stop)
            if checkpoint:
                run.save(ctx, step)
            tick = time.perf_counter()
        if stop:
            break
    stage.end(ctx, last)

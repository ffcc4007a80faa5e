"""The one training loop: a source pretraining stage, then joint adaptation, for every adapter.

    labelled source batch  -+                      +-> head -> CE(y_s)              -+
                            +-> feature extractor -+                                 +-> total -> one optimizer
    unlabelled target batch-+                      +-> adapter.loss(f_s, f_t, ...)  -+

Source and target batches go through the extractor in one forward over ``cat(x_s, x_t)``
(as in Transfer-Learning-Library), so batch-norm statistics see both domains.

Both stages checkpoint every ``train.checkpoint_every`` steps and on SIGTERM / Ctrl-C; a checkpoint
holds everything a resumed run needs to end exactly as an uninterrupted one would (on CPU).
"""
from __future__ import annotations

import inspect
import math
import os
import random
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import da.adapters  # noqa: F401  (registers the built-in adapters)
import da.models  # noqa: F401  (registers the backbones)
from da.adapters.base import Adapter
from da.checkpoint import load_checkpoint, save_checkpoint
from da.config import LOOP_PROVIDED, Config, TrainConfig, dump_yaml, to_dict
from da.data import BatchSampler, Split
from da.domains import Domains, load_domains
from da.errors import DAError, Interrupted
from da.models import linear_head
from da.registry import ADAPTERS, BACKBONES
from da.run_files import write_json, write_text_atomic
from da.run_log import ResumePoint, RunLog

STAGE_LABELS = {"pretrain": "pretraining", "adapt": "adaptation"}
#: summary.json fields that measure time, not results: they differ between otherwise equal runs.
TIMING_FIELDS = ("wall_s", "train_s", "train_imgs_per_s")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DAError(f"device {name!r} asked for, but torch sees no CUDA GPU; set device: auto or cpu")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:  # GPU kernels: cuBLAS needs a fixed workspace to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(deterministic)


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": random.getstate(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(_tuples(state["python"]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def build_adapter(config: Config, feature_dim: int, num_classes: int) -> Adapter:
    """Instantiate the configured adapter, passing ``feature_dim``/``num_classes`` if it takes them.

    An adapter list becomes a ``Composite`` of its parts, each built the same way.
    """
    from da.adapters.compose import Composite
    from da.config import AdapterConfig

    def one(spec: AdapterConfig, label: str) -> Adapter:
        cls = ADAPTERS.get(spec.name)
        takes = inspect.signature(cls).parameters
        provided = {"feature_dim": feature_dim, "num_classes": num_classes}
        kwargs = {k: v for k, v in provided.items() if k in takes and k in LOOP_PROVIDED}
        try:
            return cls(**kwargs, **spec.kwargs)
        except (TypeError, ValueError) as exc:  # a value of the right type that the adapter still refuses
            raise DAError(f"{label} rejected its arguments {spec.kwargs}: {exc}") from None

    spec = config.adapter
    if not spec.parts:
        return one(spec, f"adapter {spec.name!r}")
    return Composite([(p.name, one(p, f"adapter[{i}] ({p.name!r})"), p.weight) for i, p in enumerate(spec.parts)])


@torch.no_grad()
def accuracy(predict: Callable[[Tensor], Tensor], split: Split, batch_size: int = 2000) -> float:
    correct = 0
    for start in range(0, len(split), batch_size):
        logits = predict(split.x[start : start + batch_size])
        correct += (logits.argmax(1) == split.y[start : start + batch_size]).sum().item()
    return correct / max(len(split), 1)


@torch.no_grad()
def batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 2000) -> Tensor:
    """``fn(x)`` computed over slices of ``batch_size`` rows."""
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def lr_factor(schedule: str, progress: float) -> float:
    """Learning-rate multiplier at ``progress`` in [0, 1]."""
    if schedule == "inv":  # Ganin et al. 2016: lr_p = lr_0 / (1 + 10 p)^0.75
        return (1.0 + 10.0 * progress) ** -0.75
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


@dataclass
class Model:
    """Extractor, adapter and head: what a checkpoint's weights restore."""

    extractor: nn.Module
    head: nn.Module
    adapter: Adapter

    def predict(self, domain: str, adapted: bool) -> Callable[[Tensor], Tensor]:
        if not adapted:  # before the adaptation stage the head reads the extractor's features directly
            return lambda x: self.head(self.extractor(x))
        return lambda x: self.head(self.adapter.transform(self.extractor(x), domain))

    @contextmanager
    def eval_mode(self) -> Iterator[None]:
        modules = (self.extractor, self.head, self.adapter)
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        try:
            yield
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)

    def evaluate(self, domains: Domains, adapted: bool = True) -> dict[str, float]:
        with self.eval_mode():
            return {
                "source_val_acc": accuracy(self.predict("source", adapted), domains.source_val),
                "source_test_acc": accuracy(self.predict("source", adapted), domains.source_test),
                "target_test_acc": accuracy(self.predict("target", adapted), domains.target_test),
            }

    @torch.no_grad()
    def validation_scores(self, domains: Domains) -> dict[str, float]:
        """Model-selection scores that read no target label (``da.validators``); higher is better."""
        from da.validators import score

        with self.eval_mode():
            source_logits = batched(self.predict("source", True), domains.source_val.x)
            target_features = batched(lambda x: self.adapter.transform(self.extractor(x), "target"), domains.target_probe)
            target_logits = batched(self.head, target_features)
        return score(source_logits, domains.source_val.y, target_logits, target_features)

    def load(self, state: dict[str, Any]) -> None:
        """Weights of a checkpoint; a closed-form adapter's head takes its fitted shape first."""
        self.extractor.load_state_dict(state["extractor"])
        self.adapter.load_state_dict(state["adapter"])
        if self.adapter.needs_fit and state["stage"] == "adapt":
            self.head = self.adapter.init_head(self.head)
        self.head.load_state_dict(state["head"])


def build_model(config: Config, domains: Domains, device: torch.device) -> Model:
    extractor = BACKBONES.get(config.model.backbone)(pretrained=config.model.pretrained,
                                                     in_channels=domains.source_train.x.shape[1])
    # Channels-last convolution weights run LeNet's training step ~1.7x faster on CPU (oneDNN).
    extractor = extractor.to(device).to(memory_format=torch.channels_last)
    width = extractor.out_features
    return Model(extractor, linear_head(width, domains.num_classes).to(device),
                 build_adapter(config, width, domains.num_classes).to(device))


@dataclass
class Stage:
    """One optimisation stage's moving parts, saved in every checkpoint of that stage."""

    name: str
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    samplers: dict[str, BatchSampler]
    group_names: list[str]
    first_step: int = 1


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
    summary: dict[str, Any] = field(default_factory=dict)
    last_checkpoint: str | None = None
    train_seconds: float = 0.0
    earlier_wall_s: float = 0.0  # wall time of the sessions before a resume
    started: float = field(default_factory=time.perf_counter)
    stop_signal: str | None = None

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def wall_s(self) -> float:
        return self.earlier_wall_s + time.perf_counter() - self.started

    def save(self, stage: Stage, step: int) -> None:
        m = self.model
        save_checkpoint(self.checkpoint_path, {
            "stage": stage.name, "step": step, "config": dump_yaml(self.config),
            "extractor": m.extractor.state_dict(), "head": m.head.state_dict(), "adapter": m.adapter.state_dict(),
            "optimizer": stage.optimizer.state_dict(), "scheduler": stage.scheduler.state_dict(),
            "samplers": {k: s.state_dict() for k, s in stage.samplers.items()},
            "rng": rng_state(), "summary": dict(self.summary),
            "train_seconds": self.train_seconds, "wall_s": self.wall_s(),
        })
        self.last_checkpoint = f"{STAGE_LABELS[stage.name]} step {step}"

    def resume_stage(self, stage: Stage, state: dict[str, Any]) -> None:
        stage.optimizer.load_state_dict(state["optimizer"])
        stage.scheduler.load_state_dict(state["scheduler"])
        for key, sampler in stage.samplers.items():
            sampler.load_state_dict(state["samplers"][key])
        set_rng_state(state["rng"])
        stage.first_step = state["step"] + 1

    def check(self, loss: Tensor, stage: Stage, step: int) -> None:
        """Stop on a non-finite loss, naming the step and the checkpoint kept."""
        if not torch.isfinite(loss):
            kept = (f"the last good checkpoint ({self.last_checkpoint}) is kept in {self.checkpoint_path}"
                    if self.last_checkpoint else "no checkpoint had been written yet")
            label = STAGE_LABELS[stage.name]
            raise DAError(f"the {label} loss became {loss.item()} at {label} step {step}; training "
                          f"stopped and {kept}; lower the learning rate or the adapter's weight")

    def stop_if_asked(self, stage: Stage, done: int) -> None:
        if self.stop_signal:
            self.save(stage, done)
            raise Interrupted(f"stopped by {self.stop_signal} after {STAGE_LABELS[stage.name]} step {done}; checkpoint saved; "
                          f"continue with: da train --resume {self.run_dir}")


def tb_offset(config: Config) -> int:
    """Adaptation steps follow the in-loop pretraining steps on TensorBoard's global step axis."""
    return 0 if config.pretrain.checkpoint else config.pretrain.steps


def make_stage(run: Run, name: str, train: TrainConfig, lr: float, steps: int, batch_size: int,
               domains: tuple[str, ...]) -> Stage:
    """SGD over named parameter groups (extractor, head, adapter) with their lr multipliers, schedule, samplers.

    Pretraining trains extractor and head at ``lr``; adaptation applies ``train.extractor`` (freeze or
    fine-tune with ``extractor_lr_mult``) and ``adapter_lr_mult``.
    """
    m = run.model
    if name == "pretrain":
        mults = {"extractor": 1.0, "head": 1.0, "adapter": 0.0}
    else:
        mults = {"extractor": train.extractor_lr_mult if train.extractor == "finetune" else 0.0,
                 "head": 1.0, "adapter": train.adapter_lr_mult}
    groups, names = [], []
    for group, module in (("extractor", m.extractor), ("head", m.head), ("adapter", m.adapter)):
        params = [p for p in module.parameters() if p.requires_grad]
        if params and mults[group] > 0:
            groups.append({"params": params, "lr": lr * mults[group]})
            names.append(group)
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=train.momentum, weight_decay=train.weight_decay,
                                nesterov=train.nesterov and train.momentum > 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(train.lr_schedule, s / max(steps, 1)))
    split = {"source": run.domains.source_train, "target": run.domains.target_train}
    samplers = {d: BatchSampler(split[d], batch_size, run.generator) for d in domains}
    return Stage(name, optimizer, scheduler, samplers, names)


def pretrain(run: Run, state: dict[str, Any] | None) -> None:
    """Stage 1: extractor + head on labelled source only (or loaded from a checkpoint)."""
    cfg, m = run.config.pretrain, run.model
    if cfg.checkpoint:
        loaded = load_checkpoint(cfg.checkpoint, run.device)
        try:
            m.extractor.load_state_dict(loaded["extractor"])
            m.head.load_state_dict(loaded["head"])
        except (KeyError, RuntimeError) as exc:
            raise DAError(f"pretrain.checkpoint {cfg.checkpoint} does not fit model.backbone "
                          f"{run.config.model.backbone} ({str(exc).splitlines()[0]})") from None
    elif cfg.steps > 0:
        # Pretraining always fine-tunes the extractor; train.extractor_lr_mult is the adaptation stage's.
        stage = make_stage(run, "pretrain", run.config.train, cfg.lr, cfg.steps, cfg.batch_size, ("source",))
        if state is not None:
            m.load(state)
            run.resume_stage(stage, state)
        run.log.describe("pretrain")
        source = stage.samplers["source"]
        every = run.config.train
        for step in range(stage.first_step, cfg.steps + 1):
            run.stop_if_asked(stage, step - 1)
            x, y = source.next()
            loss = F.cross_entropy(m.head(m.extractor(x)), y)
            run.check(loss, stage, step)
            stage.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            stage.optimizer.step()
            stage.scheduler.step()
            if step % every.log_every == 0:
                run.log.scalars({"pretrain/loss": loss.item()}, step)
                run.log.progress(1, loss=loss.item())
            else:
                run.log.progress(1)
            if step % every.checkpoint_every == 0 and step < cfg.steps:
                run.save(stage, step)
    else:
        return
    accs = m.evaluate(run.domains, adapted=False)
    run.log.scalars({f"pretrain/{k}": v for k, v in accs.items()}, cfg.steps)
    run.log.metrics_row({"stage": "pretrain", "step": cfg.steps, **accs})
    run.summary.update({f"pretrain_{k}": v for k, v in accs.items()})


def fit_closed_form(run: Run) -> None:
    """For adapters such as subspace alignment: fit on extractor features, then the head they need."""
    n, d, m = run.config.train.fit_samples, run.domains, run.model
    g = torch.Generator().manual_seed(run.config.seed)
    pick = lambda split: split.x[torch.randperm(len(split), generator=g)[:n].to(split.x.device)]
    was_training = m.extractor.training
    m.extractor.eval()
    m.adapter.fit(batched(m.extractor, pick(d.source_train)), batched(m.extractor, pick(d.target_train)))
    m.extractor.train(was_training)
    m.head = m.adapter.init_head(m.head)


def adapt(run: Run, state: dict[str, Any] | None) -> None:
    """Stage 2: extractor, head and adapter trained jointly on source + target batches."""
    cfg, m = run.config.train, run.model
    freeze = cfg.extractor == "freeze"
    m.extractor.requires_grad_(not freeze)
    stage = make_stage(run, "adapt", cfg, cfg.lr, cfg.steps, cfg.batch_size, ("source", "target"))
    if state is not None:
        run.resume_stage(stage, state)
    else:
        run.save(stage, 0)
    source, target = stage.samplers["source"], stage.samplers["target"]
    m.extractor.train(not freeze)  # a frozen extractor is a fixed feature map: no dropout
    m.head.train()
    m.adapter.train()
    run.log.describe(f"adapt:{run.config.adapter.name}")
    offset = tb_offset(run.config)
    tick = time.perf_counter()
    for step in range(stage.first_step, cfg.steps + 1):
        if run.stop_signal:
            run.train_seconds += time.perf_counter() - tick
            run.stop_if_asked(stage, step - 1)
        x_s, y_s = source.next()
        x_t, _ = target.next()
        with torch.set_grad_enabled(not freeze):
            f_s, f_t = m.extractor(torch.cat([x_s, x_t])).split([len(x_s), len(x_t)])
        z_s = m.adapter.transform(f_s, "source")
        z_t = m.adapter.transform(f_t, "target")
        logits_s, logits_t = m.head(torch.cat([z_s, z_t])).split([len(z_s), len(z_t)])
        task = F.cross_entropy(logits_s, y_s)
        align, scalars = m.adapter.loss(f_s, f_t, logits_s=logits_s, logits_t=logits_t, y_s=y_s,
                                        progress=(step - 1) / cfg.steps)
        total = task + align
        run.check(total, stage, step)
        stage.optimizer.zero_grad(set_to_none=True)
        total.backward()
        stage.optimizer.step()
        stage.scheduler.step()

        if step % cfg.log_every == 0 or step == cfg.steps:
            batch_acc = (logits_s.argmax(1) == y_s).float().mean().item()
            values = {"loss/total": total.item(), "loss/task": task.item(), "loss/adapter": align.item(),
                      "acc/source_batch": batch_acc}
            values.update({f"adapter/{k}": float(v) for k, v in scalars.items()})
            values.update({f"lr/{n}": g["lr"] for n, g in zip(stage.group_names, stage.optimizer.param_groups)})
            run.log.scalars(values, offset + step)
            run.log.progress(1, loss=values["loss/total"], src_acc=batch_acc)
        else:
            run.log.progress(1)

        evaluate = step % cfg.eval_every == 0 or step == cfg.steps
        if evaluate or step % cfg.checkpoint_every == 0:
            if run.device.type == "cuda":
                torch.cuda.synchronize()
            run.train_seconds += time.perf_counter() - tick
            if evaluate:
                record_evaluation(run, step)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                run.save(stage, step)
            tick = time.perf_counter()
    if cfg.steps == 0:
        run.summary.update(m.evaluate(run.domains))


def record_evaluation(run: Run, step: int) -> None:
    """Accuracies and validator scores at ``step``: logged, and kept in the history selection reads."""
    m, offset = run.model, tb_offset(run.config)
    accs = m.evaluate(run.domains)
    scores = m.validation_scores(run.domains)
    run.log.scalars({f"acc/{k.removesuffix('_acc')}": v for k, v in accs.items()}, offset + step)
    run.log.scalars({f"validator/{k}": v for k, v in scores.items()}, offset + step)
    run.log.metrics_row({"stage": "adapt", "step": step, **accs, "scores": scores})
    run.log.progress(0, tgt_test=accs["target_test_acc"], src_val=accs["source_val_acc"])
    run.summary.update(accs)
    run.summary["history"] = [*run.summary.get("history", []), {"step": step, **accs, "scores": scores}]


def selections(history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per selection rule (last, each validator, oracle): the evaluated step it picks and its accuracies."""
    from da.validators import VALIDATORS, pick

    if not history:
        return {}
    by_step = {row["step"]: row for row in history}
    out = {}
    for rule in ("last", *VALIDATORS, "oracle"):
        chosen = pick(history, rule)
        row = by_step[chosen["step"]]
        out[rule] = {"step": row["step"], "target_test_acc": row["target_test_acc"],
                     "source_test_acc": row["source_test_acc"], "score": chosen.get("score")}
    return out


def flat_hparams(config: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}{k}.", v)
        else:
            out[prefix[:-1]] = node

    walk("", to_dict(config))
    return out


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


def train(config: Config, run_dir: Path, show_progress: bool = True, resume: bool = False) -> dict[str, Any]:
    """Run both stages into ``run_dir``; with ``resume``, continue from its ``checkpoint.pt``."""
    started = time.perf_counter()
    state = load_checkpoint(run_dir / "checkpoint.pt") if resume else None
    if state is None:
        write_text_atomic(run_dir / "config.yaml", dump_yaml(config))
    seed_everything(config.seed, config.deterministic)
    device = pick_device(config.device)
    domains = load_domains(config.data, device)
    model = build_model(config, domains, device)
    offset = tb_offset(config)
    resume_at = None
    if state is not None:
        global_step = state["step"] + (offset if state["stage"] == "adapt" else 0)
        resume_at = ResumePoint(state["stage"], state["step"], global_step)
    run = Run(config=config, run_dir=run_dir, device=device, domains=domains, model=model,
              log=RunLog(run_dir, flat_hparams(config), offset + config.train.steps, show_progress, resume_at),
              generator=torch.Generator().manual_seed(config.seed), started=started)
    if state is not None:
        run.summary, run.train_seconds, run.earlier_wall_s = dict(state["summary"]), state["train_seconds"], state["wall_s"]
        run.last_checkpoint = f"{STAGE_LABELS[state['stage']]} step {state['step']}"
    try:
        with stop_on_signals(run):
            if state is None or state["stage"] == "pretrain":
                pretrain(run, state)
                state = None
                if model.adapter.needs_fit:
                    fit_closed_form(run)
            else:
                model.load(state)
            adapt(run, state)
        run.log.scalars({f"hparam/{k}": run.summary[k] for k in ("target_test_acc", "source_test_acc", "source_val_acc")},
                        offset + config.train.steps)
    finally:
        run.log.close()
    summary = make_summary(run, device)
    write_json(run_dir / "summary.json", summary)
    return summary


def make_summary(run: Run, device: torch.device) -> dict[str, Any]:
    config, s = run.config, run.summary
    return {
        "name": config.name, "adapter": config.adapter.name, "seed": config.seed,
        "source": config.data.source, "target": config.data.target, "backbone": config.model.backbone,
        "pretrain_steps": config.pretrain.steps, "steps": config.train.steps, "batch_size": config.train.batch_size,
        "source_test_acc": s["source_test_acc"], "target_test_acc": s["target_test_acc"],
        "source_val_acc": s["source_val_acc"],
        **{k: v for k, v in s.items() if k.startswith("pretrain_")},
        "wall_s": round(run.wall_s(), 2), "train_s": round(run.train_seconds, 3),
        "train_imgs_per_s": round(2 * config.train.batch_size * config.train.steps / max(run.train_seconds, 1e-9), 1),
        "device": str(device), "torch": torch.__version__,
        "hparams": config.adapter.kwargs,
        # "oracle" reads target test labels: an upper bound, never a result.
        "selection": selections(s.get("history", [])),
        "history": s.get("history", []),
    }

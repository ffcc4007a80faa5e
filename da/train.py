"""The one training loop: a source pretraining stage, then joint adaptation, for every adapter.

    labelled source batch  -+                      +-> head -> CE(y_s)              -+
                            +-> feature extractor -+                                 +-> total -> one optimizer
    unlabelled target batch-+                      +-> adapter.loss(f_s, f_t, ...)  -+

Source and target batches go through the extractor in one forward over ``cat(x_s, x_t)``
(as in Transfer-Learning-Library), so batch-norm statistics see both domains.

Both stages checkpoint every ``train.checkpoint_every`` steps and on SIGTERM / Ctrl-C; a checkpoint
holds everything a resumed run needs to end exactly as an uninterrupted one would (on CPU).

Transfer learning beyond adaptation is configuration of the same loop: a few labelled target
images per class add their cross-entropy to the task loss (``data.target_labels_per_class``,
``train.source_weight``), fine-tuning strategies decide which extractor blocks train when and how
fast (``da.finetune``), early stopping restores the best evaluation by a label-free validator
(``train.early_stopping``), and ``pretrain.load: extractor`` starts a new task's head from scratch
on a pretrained extractor.
"""
from __future__ import annotations

import inspect
import math
import os
import random
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
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
from da.data.augment import RandomAffine
from da.domains import Domains, load_domains
from da.errors import DAError, Interrupted
from da.finetune import FineTuning, Group
from da.models import linear_head
from da.models.backbones import BlockOutputs, WithBottleneck
from da.models.domain_norm import DomainBatchNorm, per_domain, routed, shared_state, start_target
from da.registry import ADAPTERS, BACKBONES
from da.run_files import replace_atomically, write_json, write_text_atomic
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
def confusion_matrix(predict: Callable[[Tensor], Tensor], split: Split, num_classes: int) -> Tensor:
    """Counts of (true class, predicted class) over ``split``: row i holds the images of class i."""
    predicted = batched(predict, split.x).argmax(1)
    counts = torch.bincount(split.y * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).cpu()


def per_class_accuracy(confusion: Tensor) -> list[float | None]:
    """Each class's recall from a confusion matrix (None for a class the split lacks)."""
    totals = confusion.sum(1)
    return [round(confusion[i, i].item() / n, 4) if n else None for i, n in enumerate(totals.tolist())]


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
    #: What the adapter reads in the adaptation stage when it names blocks of the extractor
    #: (subspace alignment's ``blocks``): their outputs side by side; None: the extractor's output.
    lower: nn.Module | None = None
    #: ``train.batch_norm: per_domain``: the extractor's batch-norm layers, one per domain each.
    domain_norms: list[DomainBatchNorm] = field(default_factory=list)

    def features(self, x: Tensor) -> Tensor:
        """The features the adapter and the adaptation stage's head read."""
        return (self.extractor if self.lower is None else self.lower)(x)

    def embed(self, x: Tensor, domain: str) -> Tensor:
        """Adapted features of ``domain``'s images: with per-domain batch norm, that domain's statistics."""
        with routed(self.domain_norms, domain):
            return self.adapter.transform(self.features(x), domain)

    def predict(self, domain: str, adapted: bool) -> Callable[[Tensor], Tensor]:
        if not adapted:  # before the adaptation stage the head reads the extractor's features directly
            return lambda x: self.head(self.extractor(x))
        return lambda x: self.head(self.embed(x, domain))

    @contextmanager
    def eval_mode(self) -> Iterator[None]:
        """Eval mode inside, then every submodule's own mode back (frozen blocks stay in eval mode)."""
        modules = (self.extractor, self.head, self.adapter)
        modes = [(sub, sub.training) for m in modules for sub in m.modules()]
        for m in modules:
            m.eval()
        try:
            yield
        finally:
            for sub, mode in modes:
                sub.training = mode

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
            target_features = batched(lambda x: self.embed(x, "target"), domains.target_probe)
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
    if config.model.bottleneck:
        extractor = WithBottleneck(extractor, config.model.bottleneck)
    norms = per_domain(extractor) if config.train.batch_norm == "per_domain" else []
    if config.train.batch_norm == "per_domain" and not norms:
        raise DAError(f"train.batch_norm: per_domain needs batch-norm layers, and backbone {config.model.backbone} "
                      "has none; add one with model.bottleneck (e.g. 256) or set train.batch_norm: shared")
    # Channels-last convolution weights run LeNet's training step ~1.7x faster on CPU (oneDNN).
    extractor = extractor.to(device).to(memory_format=torch.channels_last)
    head = linear_head(extractor.out_features, domains.num_classes).to(device)
    blocks = config.adapter.blocks()
    if not blocks:
        return Model(extractor, head, build_adapter(config, extractor.out_features, domains.num_classes).to(device),
                     domain_norms=norms)
    lower = BlockOutputs(extractor, blocks)
    was_training = extractor.training
    with torch.no_grad():  # the blocks' output width, from two images in eval mode (batch norm needs no batch)
        width = lower.eval()(domains.source_train.x[:2]).shape[1]
    extractor.train(was_training)
    return Model(extractor, head, build_adapter(config, width, domains.num_classes).to(device), lower, norms)


@dataclass
class Stage:
    """One optimisation stage's moving parts, saved in every checkpoint of that stage."""

    name: str
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    samplers: dict[str, BatchSampler]
    group_names: list[str]
    first_step: int = 1
    fine_tuning: FineTuning | None = None  # adaptation: which groups train when (da.finetune)


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

    @property
    def best_path(self) -> Path:
        """Early stopping: the checkpoint of the best evaluation so far (a complete, resumable one)."""
        return self.run_dir / "best.pt"

    def wall_s(self) -> float:
        return self.earlier_wall_s + time.perf_counter() - self.started

    def save(self, stage: Stage, step: int, path: Path | None = None) -> None:
        m = self.model
        save_checkpoint(path or self.checkpoint_path, {
            "stage": stage.name, "step": step, "config": dump_yaml(self.config),
            "extractor": m.extractor.state_dict(), "head": m.head.state_dict(), "adapter": m.adapter.state_dict(),
            "optimizer": stage.optimizer.state_dict(), "scheduler": stage.scheduler.state_dict(),
            "samplers": {k: s.state_dict() for k, s in stage.samplers.items()},
            "rng": rng_state(), "summary": dict(self.summary),
            "train_seconds": self.train_seconds, "wall_s": self.wall_s(),
        })
        if path is None:
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
               domains: tuple[str, ...], done: int = 0) -> Stage:
    """SGD over named parameter groups with their lr multipliers, schedule, samplers.

    Pretraining trains extractor and head at ``lr``. Adaptation trains the groups of
    ``da.finetune.FineTuning`` that train after ``done`` steps (``train.extractor``, ``extractor_lr_mult``,
    ``lr_mults``, ``unfreeze``, ``adapter_lr_mult``); later ones join through ``unfreeze``. Samplers
    draw from ``domains``: ``source``, ``target`` (labels hidden) and ``target_labelled``.
    """
    m = run.model
    fine_tuning = None
    if name == "pretrain":
        groups = [Group("extractor", m.extractor, 1.0, 0), Group("head", m.head, 1.0, 0)]
    else:
        fine_tuning = FineTuning.for_adaptation(m.extractor, m.head, m.adapter, train)
        fine_tuning.set_modes(done)
        groups = fine_tuning.trainable(done)
    param_groups, names = [], []
    for group in groups:
        params = [p for p in group.module.parameters() if p.requires_grad]
        if params:
            param_groups.append({"params": params, "lr": lr * group.lr_mult})
            names.append(group.name)
    if not param_groups:  # nothing trains (a 0-step stage, checked in train()): an empty group keeps SGD valid
        param_groups, names = [{"params": [], "lr": lr}], ["none"]
    optimizer = torch.optim.SGD(param_groups, lr=lr, momentum=train.momentum, weight_decay=train.weight_decay,
                                nesterov=train.nesterov and train.momentum > 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(train.lr_schedule, s / max(steps, 1)))
    d = run.domains
    split = {"source": d.source_train, "target": d.target_train, "target_labelled": d.target_labelled}
    samplers = {key: BatchSampler(split[key], min(batch_size, len(split[key])) if key == "target_labelled" else batch_size,
                                  run.generator, augmentation(run, key, split[key])) for key in domains}
    return Stage(name, optimizer, scheduler, samplers, names, fine_tuning=fine_tuning)


def augmentation(run: Run, key: str, split: Split) -> RandomAffine | None:
    """``data.augment``'s transform for the sampler of ``key`` (source, target or target_labelled), if it has one."""
    cfg, domain = run.config.data.augment, key.split("_")[0]
    if cfg is None or domain not in cfg.domains:
        return None
    if split.x.dim() != 4:
        name = getattr(run.config.data, domain)
        shape = "x".join(map(str, split.x.shape[1:]))
        raise DAError(f"data.augment transforms images (channels x height x width), but dataset {name} holds "
                      f"inputs of shape {shape}; remove data.augment or drop {domain} from data.augment.domains")
    return RandomAffine(cfg.rotate, cfg.scale, cfg.translate, run.generator)


def unfreeze(stage: Stage, lr: float, done: int) -> list[str]:
    """Gradual unfreezing, at the end of step ``done``: the groups that train from the next step join
    the optimizer, at the learning rate the schedule gives now; returns their names."""
    joined = []
    for group in stage.fine_tuning.unfreezing_at(done):
        if group.name in stage.group_names:  # a run resumed at ``done`` built its optimizer with it
            continue
        group.module.requires_grad_(True)
        group.module.train(True)
        base = lr * group.lr_mult
        scheduler = stage.scheduler
        stage.optimizer.add_param_group({"params": [p for p in group.module.parameters()], "lr": base,
                                         "initial_lr": base})
        scheduler.base_lrs.append(base)
        scheduler.lr_lambdas.append(scheduler.lr_lambdas[0])
        stage.optimizer.param_groups[-1]["lr"] = base * scheduler.lr_lambdas[0](scheduler.last_epoch)
        stage.group_names.append(group.name)
        joined.append(group.name)
    return joined


def pretrain(run: Run, state: dict[str, Any] | None) -> None:
    """Stage 1: extractor + head on labelled source only (or loaded from a checkpoint)."""
    cfg, m = run.config.pretrain, run.model
    if cfg.checkpoint:
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


def fit_draw(domains: Domains, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """The source and target train indices (``n`` of each, seeded) a closed-form adapter is fitted on."""
    g = torch.Generator().manual_seed(seed)
    pick = lambda split: torch.randperm(len(split), generator=g)[:n].to(split.x.device)
    return pick(domains.source_train), pick(domains.target_train)


def fit_closed_form(run: Run) -> None:
    """For adapters such as subspace alignment: fit on extractor features, then the head they need."""
    d, m = run.domains, run.model
    source, target = fit_draw(d, run.config.train.fit_samples, run.config.seed)
    was_training = m.extractor.training
    m.extractor.eval()
    with torch.no_grad():
        with routed(m.domain_norms, "target"):
            target_features = batched(m.features, d.target_train.x[target])
        m.adapter.fit(batched(m.features, d.source_train.x[source]), target_features, y_s=d.source_train.y[source])
    m.extractor.train(was_training)
    m.head = m.adapter.init_head(m.head)


def adapt(run: Run, state: dict[str, Any] | None) -> None:
    """Stage 2: extractor, head and adapter trained jointly on source + target batches.

    With target labels (``data.target_labels_per_class``) each step also draws a labelled target
    batch whose cross-entropy joins the task loss; ``train.source_weight`` weighs the source's.
    """
    cfg, m, d = run.config.train, run.model, run.domains
    labelled = d.target_labelled is not None
    done = state["step"] if state is not None else 0
    stage = make_stage(run, "adapt", cfg, cfg.lr, cfg.steps, cfg.batch_size,
                       ("source", "target", "target_labelled") if labelled else ("source", "target"), done)
    fine_tuning = stage.fine_tuning
    if state is not None:
        run.resume_stage(stage, state)
    else:
        run.save(stage, 0)
    source, target = stage.samplers["source"], stage.samplers["target"]
    target_labelled = stage.samplers.get("target_labelled")
    # Source and unlabelled target batches matter unless the source loss is off and the adapter's
    # loss is the base class's zero (source_only): then only labelled target images go through.
    unlabelled = cfg.source_weight > 0 or type(m.adapter).loss is not Adapter.loss
    m.head.train()
    m.adapter.train()
    run.log.describe(f"adapt:{run.config.adapter.name}")
    offset = tb_offset(run.config)
    tick = time.perf_counter()
    last = done
    # A run stopped early and killed before it restored its best evaluation does not train on.
    first = cfg.steps + 1 if run.summary.get("stopped_early_at") else stage.first_step
    for step in range(first, cfg.steps + 1):
        if run.stop_signal:
            run.train_seconds += time.perf_counter() - tick
            run.stop_if_asked(stage, step - 1)
        x_s, y_s = source.next()
        x_t, _ = target.next()
        batches = [x_s, x_t] if unlabelled else []
        if labelled:
            x_l, y_l = target_labelled.next()
            batches.append(x_l)
        with torch.set_grad_enabled(fine_tuning.extractor_trains(step - 1)), \
                routed(m.domain_norms, split=len(x_s) if unlabelled else 0):
            features = m.features(torch.cat(batches)).split([len(x) for x in batches])
        if unlabelled:
            f_s, f_t = features[0], features[1]
            z = [m.adapter.transform(f_s, "source"), m.adapter.transform(f_t, "target")]
        else:
            z = []
        if labelled:
            z.append(m.adapter.transform(features[-1], "target"))
        logits = m.head(torch.cat(z)).split([len(v) for v in z])
        values: dict[str, float] = {}
        if unlabelled:
            logits_s, logits_t = logits[0], logits[1]
            task = F.cross_entropy(logits_s, y_s)
            if cfg.source_weight != 1.0:
                task = cfg.source_weight * task
            align, scalars = m.adapter.loss(f_s, f_t, logits_s=logits_s, logits_t=logits_t, y_s=y_s,
                                            progress=(step - 1) / cfg.steps)
        else:
            task = align = logits[0].new_zeros(())
            scalars = {}
        if labelled:
            target_loss = F.cross_entropy(logits[-1], y_l)
            task = task + target_loss
            values["loss/target_labelled"] = target_loss.detach()
        total = task + align
        run.check(total, stage, step)
        stage.optimizer.zero_grad(set_to_none=True)
        total.backward()
        stage.optimizer.step()
        stage.scheduler.step()
        last = step

        if step % cfg.log_every == 0 or step == cfg.steps:
            values.update({"loss/total": total.item(), "loss/task": task.item(), "loss/adapter": align.item()})
            values = {k: float(v) for k, v in values.items()}
            if unlabelled:
                values["acc/source_batch"] = (logits_s.argmax(1) == y_s).float().mean().item()
            values.update({f"adapter/{k}": float(v) for k, v in scalars.items()})
            values.update({f"lr/{n}": g["lr"] for n, g in zip(stage.group_names, stage.optimizer.param_groups)})
            values.update(fine_tuning.trainable_flags(step - 1))
            run.log.scalars(values, offset + step)
            run.log.progress(1, loss=values["loss/total"], **({"src_acc": values["acc/source_batch"]} if unlabelled else {}))
        else:
            run.log.progress(1)

        if fine_tuning.unfreezing_at(step):  # before any checkpoint of this step: it holds the new groups
            unfreeze(stage, cfg.lr, step)
        evaluate = step % cfg.eval_every == 0 or step == cfg.steps
        stop = False
        if evaluate or step % cfg.checkpoint_every == 0:
            if run.device.type == "cuda":
                torch.cuda.synchronize()
            run.train_seconds += time.perf_counter() - tick
            if evaluate:
                record_evaluation(run, step)
                stop = cfg.early_stopping is not None and track_best(run, stage, step) and step < cfg.steps
                if stop:
                    run.summary["stopped_early_at"] = step
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                run.save(stage, step)
            tick = time.perf_counter()
        if stop:
            break
    run.summary["steps_done"] = last
    run.summary["images_per_step"] = ((2 * cfg.batch_size if unlabelled else 0)
                                      + (target_labelled.batch_size if labelled else 0))
    if cfg.steps == 0:
        record_evaluation(run, 0)
    if cfg.early_stopping is not None and run.summary.get("history"):
        restore_best(run)


def best_evaluation(history: list[dict[str, Any]], validator: str) -> tuple[dict[str, Any], int]:
    """Early stopping's best row by ``validator`` and the evaluations made since it.

    A later evaluation must beat the best score to replace it (ties keep the earlier step; a NaN
    score never wins), so a plateau runs out the patience.
    """
    best, since = history[0], 0
    for row in history[1:]:
        score, top = row["scores"][validator], best["scores"][validator]
        if not math.isnan(score) and (math.isnan(top) or score > top):
            best, since = row, 0
        else:
            since += 1
    return best, since


def track_best(run: Run, stage: Stage, step: int) -> bool:
    """After the evaluation at ``step``: save ``best.pt`` if it is the best so far; True to stop."""
    rule = run.config.train.early_stopping
    best, since = best_evaluation(run.summary["history"], rule.validator)
    if best["step"] == step:
        run.save(stage, step, run.best_path)
    return since >= rule.patience


def restore_best(run: Run) -> None:
    """Early stopping's end: the model, ``checkpoint.pt`` and the summary's accuracies become those of
    the best evaluation (``best.pt``); the history keeps every evaluation."""
    rule = run.config.train.early_stopping
    best, _ = best_evaluation(run.summary["history"], rule.validator)
    state = load_checkpoint(run.best_path, run.device)
    if state["step"] != best["step"]:
        raise DAError(f"{run.best_path} holds step {state['step']} but the best evaluation by {rule.validator} is at "
                      f"step {best['step']}; rerun from scratch")
    m = run.model  # the head already has its adapted shape: load the weights as they are
    m.extractor.load_state_dict(state["extractor"])
    m.adapter.load_state_dict(state["adapter"])
    m.head.load_state_dict(state["head"])
    replace_atomically(run.checkpoint_path, lambda tmp: tmp.write_bytes(run.best_path.read_bytes()))
    run.summary.update({k: best[k] for k in ("source_val_acc", "source_test_acc", "target_test_acc")})
    run.summary["early_stopping"] = {
        "validator": rule.validator, "patience": rule.patience, "restored_step": best["step"],
        "score": best["scores"][rule.validator], "stopped_early_at": run.summary.get("stopped_early_at"),
    }


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
    # A run begun before a validator was added (and resumed since) lacks its early scores: no pick.
    scored = [v for v in VALIDATORS if all(v in row["scores"] for row in history)]
    out = {}
    for rule in ("last", *scored, "oracle"):
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
    if domains.target_labelled is not None:
        write_json(run_dir / "target_labels.json", target_labels_record(config, domains, indices=True))
    model = build_model(config, domains, device)
    if not model.adapter.trains_head() and config.train.steps > 0:
        raise DAError(f"adapter {config.adapter.name!r} builds a head with nothing to train (e.g. subspace's "
                      f"classifier: nn), so train.steps must be 0, not {config.train.steps}; set train.steps: 0")
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
                with model.eval_mode():
                    start_target(model.domain_norms, model.features, domains.target_train.x)
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


def target_labels_record(config: Config, domains: Domains, indices: bool) -> dict[str, Any]:
    """Which labelled target images the run trains on: counts, and with ``indices`` their indices
    into the target train split (``target_labels.json`` always lists them; summary.json unless "all")."""
    y = domains.target_labelled.y
    return {"dataset": config.data.target, "split": "train", "per_class": config.data.target_labels_per_class,
            "split_seed": config.data.split_seed, "count": len(y),
            "class_counts": torch.bincount(y.cpu(), minlength=domains.num_classes).tolist(), "file": "target_labels.json",
            **({"indices": domains.target_labelled_index.tolist()} if indices else {})}


def make_summary(run: Run, device: torch.device) -> dict[str, Any]:
    config, s = run.config, run.summary
    with run.model.eval_mode():
        confusion = confusion_matrix(run.model.predict("target", True), run.domains.target_test, run.domains.num_classes)
    return {
        "name": config.name, "adapter": config.adapter.name, "seed": config.seed,
        "source": config.data.source, "target": config.data.target, "backbone": config.model.backbone,
        "pretrain_steps": config.pretrain.steps, "steps": config.train.steps, "batch_size": config.train.batch_size,
        "source_test_acc": s["source_test_acc"], "target_test_acc": s["target_test_acc"],
        "source_val_acc": s["source_val_acc"],
        # Of the final model, which target classes it gets wrong and as what (rows: true class).
        "target_test_per_class_acc": per_class_accuracy(confusion), "target_test_confusion": confusion.tolist(),
        **{k: v for k, v in s.items() if k.startswith("pretrain_")},
        "wall_s": round(run.wall_s(), 2), "train_s": round(run.train_seconds, 3),
        "train_imgs_per_s": round(s.get("images_per_step", 2 * config.train.batch_size)
                                  * s.get("steps_done", config.train.steps) / max(run.train_seconds, 1e-9), 1),
        "device": str(device), "torch": torch.__version__,
        "hparams": config.adapter.kwargs,
        **({"augment": asdict(config.data.augment)} if config.data.augment is not None else {}),
        **({"target_labels": target_labels_record(config, run.domains, indices=config.data.target_labels_per_class != "all")}
           if run.domains.target_labelled is not None else {}),
        **({"early_stopping": s["early_stopping"]} if "early_stopping" in s else {}),
        # "oracle" reads target test labels: an upper bound, never a result.
        "selection": selections(s.get("history", [])),
        "history": s.get("history", []),
    }

"""The one training loop: a source pretraining stage, then joint adaptation, for every adapter.

    labelled source batch  -+                      +-> head -> CE(y_s)              -+
                            +-> feature extractor -+                                 +-> total -> one optimizer
    unlabelled target batch-+                      +-> adapter.loss(f_s, f_t, ...)  -+

Source and target batches go through the extractor in one forward over ``cat(x_s, x_t)``
(as in Transfer-Learning-Library), so batch-norm statistics see both domains.
"""
from __future__ import annotations

import inspect
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

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
from da.errors import DAError
from da.models import linear_head
from da.registry import ADAPTERS, BACKBONES
from da.run_log import RunLog


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DAError(f"device {name!r} asked for, but torch sees no CUDA GPU; set device: auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_adapter(config: Config, feature_dim: int, num_classes: int) -> Adapter:
    """Instantiate the configured adapter, passing ``feature_dim``/``num_classes`` if it takes them."""
    cls = ADAPTERS.get(config.adapter.name)
    takes = inspect.signature(cls).parameters
    provided = {"feature_dim": feature_dim, "num_classes": num_classes}
    kwargs = {k: v for k, v in provided.items() if k in takes and k in LOOP_PROVIDED}
    return cls(**kwargs, **config.adapter.kwargs)


@torch.no_grad()
def accuracy(predict: Callable[[Tensor], Tensor], split: Split, batch_size: int = 2000) -> float:
    correct = 0
    for start in range(0, len(split), batch_size):
        logits = predict(split.x[start : start + batch_size])
        correct += (logits.argmax(1) == split.y[start : start + batch_size]).sum().item()
    return correct / max(len(split), 1)


@torch.no_grad()
def extract(extractor: nn.Module, x: Tensor, batch_size: int = 2000) -> Tensor:
    return torch.cat([extractor(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def lr_factor(schedule: str, progress: float) -> float:
    """Learning-rate multiplier at ``progress`` in [0, 1]."""
    if schedule == "inv":  # Ganin et al. 2016: lr_p = lr_0 / (1 + 10 p)^0.75
        return (1.0 + 10.0 * progress) ** -0.75
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


@dataclass
class Run:
    """Everything the stages share."""

    config: Config
    run_dir: Path
    device: torch.device
    domains: Domains
    extractor: nn.Module
    head: nn.Module
    adapter: Adapter
    log: RunLog
    generator: torch.Generator
    summary: dict[str, Any] = field(default_factory=dict)
    last_checkpoint_step: int | None = None

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def predict(self, domain: str, adapted: bool) -> Callable[[Tensor], Tensor]:
        if not adapted:  # before the adaptation stage the head reads the extractor's features directly
            return lambda x: self.head(self.extractor(x))
        return lambda x: self.head(self.adapter.transform(self.extractor(x), domain))

    def evaluate(self, adapted: bool = True) -> dict[str, float]:
        modules = (self.extractor, self.head, self.adapter)
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        d = self.domains
        accs = {
            "source_val_acc": accuracy(self.predict("source", adapted), d.source_val),
            "source_test_acc": accuracy(self.predict("source", adapted), d.source_test),
            "target_test_acc": accuracy(self.predict("target", adapted), d.target_test),
        }
        for m, mode in zip(modules, modes):
            m.train(mode)
        return accs


def make_optimizer(run: Run, train: TrainConfig, lr: float, steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, list[str]]:
    """SGD over named parameter groups (extractor with its multiplier, head, adapter) and its schedule."""
    groups, names = [], []
    extractor_trainable = train.extractor == "finetune"
    for name, module, mult in (
        ("extractor", run.extractor, train.extractor_lr_mult if extractor_trainable else 0.0),
        ("head", run.head, 1.0),
        ("adapter", run.adapter, train.adapter_lr_mult),
    ):
        params = [p for p in module.parameters() if p.requires_grad]
        if params and mult > 0:
            groups.append({"params": params, "lr": lr * mult})
            names.append(name)
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=train.momentum, weight_decay=train.weight_decay,
                                nesterov=train.nesterov and train.momentum > 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(train.lr_schedule, s / max(steps, 1)))
    return optimizer, scheduler, names


def pretrain(run: Run) -> None:
    """Stage 1: extractor + head on labelled source only (or loaded from a checkpoint)."""
    cfg = run.config.pretrain
    if cfg.checkpoint:
        state = load_checkpoint(cfg.checkpoint, run.device)
        try:
            run.extractor.load_state_dict(state["extractor"])
            run.head.load_state_dict(state["head"])
        except (KeyError, RuntimeError) as exc:
            raise DAError(f"pretrain.checkpoint {cfg.checkpoint} does not fit model.backbone "
                          f"{run.config.model.backbone} ({str(exc).splitlines()[0]})") from None
    elif cfg.steps > 0:
        optimizer, scheduler, _ = make_optimizer(run, run.config.train, cfg.lr, cfg.steps)
        source = BatchSampler(run.domains.source_train, cfg.batch_size, run.generator)
        run.log.describe("pretrain")
        for step in range(1, cfg.steps + 1):
            x, y = source.next()
            loss = F.cross_entropy(run.head(run.extractor(x)), y)
            check_finite(run, loss, "pretrain", step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if step % run.config.train.log_every == 0:
                run.log.scalars({"pretrain/loss": loss.item()}, step)
                run.log.progress(1, loss=loss.item())
            else:
                run.log.progress(1)
    else:
        return
    accs = run.evaluate(adapted=False)
    run.log.scalars({f"pretrain/{k}": v for k, v in accs.items()}, cfg.steps)
    run.log.metrics_row({"stage": "pretrain", "step": cfg.steps, **accs})
    run.summary.update({f"pretrain_{k}": v for k, v in accs.items()})


def fit_closed_form(run: Run) -> None:
    """For adapters such as subspace alignment: fit on extractor features, then start a fresh head."""
    n = run.config.train.fit_samples
    g = torch.Generator().manual_seed(run.config.seed)
    d = run.domains
    pick = lambda split: split.x[torch.randperm(len(split), generator=g)[:n].to(split.x.device)]
    was_training = run.extractor.training
    run.extractor.eval()
    run.adapter.fit(extract(run.extractor, pick(d.source_train)), extract(run.extractor, pick(d.target_train)))
    run.extractor.train(was_training)
    run.head = run.adapter.init_head(run.head)


def check_finite(run: Run, loss: Tensor, stage: str, step: int) -> None:
    if not torch.isfinite(loss):
        kept = (f"the last good checkpoint (adaptation step {run.last_checkpoint_step}) is kept in {run.checkpoint_path}"
                if run.last_checkpoint_step is not None else "no checkpoint had been written yet")
        raise DAError(f"the {stage} loss became {loss.item()} at {stage} step {step}; training stopped and {kept}; "
                      f"lower the learning rate or the adapter's weight")


def adapt(run: Run) -> None:
    """Stage 2: extractor, head and adapter trained jointly on source + target batches."""
    cfg = run.config.train
    freeze = cfg.extractor == "freeze"
    run.extractor.requires_grad_(not freeze)
    optimizer, scheduler, group_names = make_optimizer(run, cfg, cfg.lr, cfg.steps)
    source = BatchSampler(run.domains.source_train, cfg.batch_size, run.generator)
    target = BatchSampler(run.domains.target_train, cfg.batch_size, run.generator)
    run.extractor.train(not freeze)  # a frozen extractor is a fixed feature map: no dropout
    run.head.train()
    run.adapter.train()
    run.log.describe(f"adapt:{run.config.adapter.name}")

    def save(step: int) -> None:
        save_checkpoint(run.checkpoint_path, {
            "stage": "adapt", "step": step, "config": dump_yaml(run.config),
            "extractor": run.extractor.state_dict(), "head": run.head.state_dict(),
            "adapter": run.adapter.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "samplers": {"source": source.state_dict(), "target": target.state_dict()},
            "torch_rng": torch.get_rng_state(),
        })
        run.last_checkpoint_step = step

    save(0)
    train_seconds, evals = 0.0, 0
    tick = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        x_s, y_s = source.next()
        x_t, _ = target.next()
        if freeze:
            with torch.no_grad():
                f_s, f_t = run.extractor(torch.cat([x_s, x_t])).split([len(x_s), len(x_t)])
        else:
            f_s, f_t = run.extractor(torch.cat([x_s, x_t])).split([len(x_s), len(x_t)])
        z_s = run.adapter.transform(f_s, "source")
        z_t = run.adapter.transform(f_t, "target")
        logits_s, logits_t = run.head(torch.cat([z_s, z_t])).split([len(z_s), len(z_t)])
        task = F.cross_entropy(logits_s, y_s)
        align, scalars = run.adapter.loss(f_s, f_t, logits_s=logits_s, logits_t=logits_t, y_s=y_s,
                                          progress=(step - 1) / cfg.steps)
        total = task + align
        check_finite(run, total, "adaptation", step)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        scheduler.step()

        if step % cfg.log_every == 0 or step == cfg.steps:
            batch_acc = (logits_s.argmax(1) == y_s).float().mean().item()
            values = {"loss/total": total.item(), "loss/task": task.item(), "loss/adapter": align.item(),
                      "acc/source_batch": batch_acc}
            values.update({f"adapter/{k}": float(v) for k, v in scalars.items()})
            values.update({f"lr/{n}": g["lr"] for n, g in zip(group_names, optimizer.param_groups)})
            run.log.scalars(values, step)
            run.log.progress(1, loss=values["loss/total"], src_acc=batch_acc)
        else:
            run.log.progress(1)

        if step % cfg.eval_every == 0 or step == cfg.steps:
            if run.device.type == "cuda":
                torch.cuda.synchronize()
            train_seconds += time.perf_counter() - tick
            accs = run.evaluate()
            evals += 1
            run.log.scalars({f"acc/{k.removesuffix('_acc')}": v for k, v in accs.items()}, step)
            run.log.metrics_row({"stage": "adapt", "step": step, "train_s": round(train_seconds, 3), **accs})
            run.log.progress(0, tgt_test=accs["target_test_acc"], src_val=accs["source_val_acc"])
            run.summary.update(accs)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save(step)
            tick = time.perf_counter()
        elif step % cfg.checkpoint_every == 0:
            train_seconds += time.perf_counter() - tick
            save(step)
            tick = time.perf_counter()

    if cfg.steps == 0:
        run.summary.update(run.evaluate())
    run.summary["train_s"] = round(train_seconds, 3)
    run.summary["train_imgs_per_s"] = round(2 * cfg.batch_size * cfg.steps / max(train_seconds, 1e-9), 1)


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


def train(config: Config, run_dir: Path, show_progress: bool = True) -> dict[str, Any]:
    """Run both stages into ``run_dir`` (which must exist and be empty); return the summary."""
    started = time.perf_counter()
    (run_dir / "config.yaml").write_text(dump_yaml(config))
    seed_everything(config.seed)
    device = pick_device(config.device)
    domains = load_domains(config.data, device)
    extractor = BACKBONES.get(config.model.backbone)(pretrained=config.model.pretrained,
                                                     in_channels=domains.source_train.x.shape[1]).to(device)
    # Channels-last convolution weights run LeNet's training step ~1.7x faster on CPU (oneDNN).
    extractor = extractor.to(memory_format=torch.channels_last)
    feature_dim = extractor.out_features
    run = Run(
        config=config, run_dir=run_dir, device=device, domains=domains, extractor=extractor,
        head=linear_head(feature_dim, domains.num_classes).to(device),
        adapter=build_adapter(config, feature_dim, domains.num_classes).to(device),
        log=RunLog(run_dir, flat_hparams(config), config.pretrain.steps + config.train.steps, show_progress),
        generator=torch.Generator().manual_seed(config.seed),
    )
    try:
        pretrain(run)
        if run.adapter.needs_fit:
            fit_closed_form(run)
        adapt(run)
        run.log.scalars({f"hparam/{k}": run.summary[k] for k in ("target_test_acc", "source_test_acc", "source_val_acc")},
                        config.train.steps)
    finally:
        run.log.close()
    summary = {
        "name": config.name, "adapter": config.adapter.name, "seed": config.seed,
        "source": config.data.source, "target": config.data.target, "backbone": config.model.backbone,
        "pretrain_steps": config.pretrain.steps, "steps": config.train.steps,
        "batch_size": config.train.batch_size,
        "source_test_acc": run.summary["source_test_acc"], "target_test_acc": run.summary["target_test_acc"],
        "source_val_acc": run.summary["source_val_acc"],
        **{k: v for k, v in run.summary.items() if k.startswith("pretrain_")},
        "wall_s": round(time.perf_counter() - started, 2),
        "train_s": run.summary["train_s"], "train_imgs_per_s": run.summary["train_imgs_per_s"],
        "device": str(device), "torch": torch.__version__,
        "hparams": config.adapter.kwargs,
    }
    write_json(run_dir / "summary.json", summary)
    return summary


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)

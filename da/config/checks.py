"""Checks of a typed ``Config`` beyond each value's type: numeric ranges, names that must be registered
(datasets, backbones, validators), extractor blocks named by ``adapter.blocks``, ``train.lr_mults`` and
``train.unfreeze`` (gradual unfreezing, ULMFiT: Howard and Ruder 2018), per-domain batch norm (DSBN:
Chang et al. 2019), few target labels, early stopping and augmentation. They import the registries
lazily, so that reading a config does not load every model at import time.
"""
from __future__ import annotations

import math
from typing import Optional

from da.config.checking import _show
from da.config.schema import AugmentConfig, Config
from da.errors import DAError


def _check_ranges(config: Config) -> None:
    positive = {
        "train.batch_size": config.train.batch_size, "pretrain.batch_size": config.pretrain.batch_size,
        "train.eval_every": config.train.eval_every, "train.log_every": config.train.log_every,
        "train.checkpoint_every": config.train.checkpoint_every, "train.fit_samples": config.train.fit_samples,
    }
    non_negative = {
        "train.steps": config.train.steps, "pretrain.steps": config.pretrain.steps,
        "train.lr": config.train.lr, "pretrain.lr": config.pretrain.lr,
        "train.weight_decay": config.train.weight_decay, "train.momentum": config.train.momentum,
        "train.extractor_lr_mult": config.train.extractor_lr_mult,
        "train.adapter_lr_mult": config.train.adapter_lr_mult, "data.source_val_size": config.data.source_val_size,
        "data.source_train_size": config.data.source_train_size, "train.source_weight": config.train.source_weight,
    }
    if config.model.bottleneck is not None:
        positive["model.bottleneck"] = config.model.bottleneck
    for key, value in positive.items():
        if value <= 0:
            raise DAError(f"config key {key} must be positive, got {value}")
    for key, value in non_negative.items():
        if value < 0:
            raise DAError(f"config key {key} must not be negative, got {value}")
    if not 0 <= config.pretrain.label_smoothing < 1:
        raise DAError(f"config key pretrain.label_smoothing must be in [0, 1), e.g. 0.1; got {config.pretrain.label_smoothing}")
    betas = config.train.betas
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise DAError(f"config key train.betas must be two numbers in [0, 1) (Adam's beta1, beta2), e.g. [0.5, 0.999]; "
                      f"got {betas!r}")
    if config.device not in ("auto", "cpu") and not config.device.startswith(("cuda", "mps")):
        raise DAError(f"config key device must be auto, cpu, cuda or cuda:N, got {config.device!r}")


def _check_names(config: Config) -> None:
    import da.data  # noqa: F401  (registers the datasets)
    import da.models  # noqa: F401  (registers the backbones)
    from da.registry import BACKBONES, DATASETS

    from da.data.data_options import check_data_options
    from da.data.image_domain import check_image_spec

    sources = config.data.source
    if isinstance(sources, list) and (not sources or not all(isinstance(s, str) for s in sources)
                                      or len(set(sources)) < len(sources)):
        raise DAError(f"config key data.source must be a dataset name or a list of distinct names, e.g. "
                      f"[mnist, syndigits, usps]; got {sources!r}")
    for key, name in [*(("data.source", s) for s in (sources if isinstance(sources, list) else [sources])),
                      ("data.target", config.data.target)]:
        if isinstance(name, dict):
            check_image_spec(name, key)
        elif not isinstance(name, str):
            raise DAError(f"config key {key} must be a dataset name or a mapping such as {{folder: DIR}}, got {_show(name)}")
        elif name not in DATASETS:
            DATASETS.get(name)  # raises the error that lists the valid names
    check_data_options(config)
    if config.model.backbone not in BACKBONES:
        BACKBONES.get(config.model.backbone)


def _check_transfer(config: Config) -> None:
    """Few target labels, fine-tuning strategies, early stopping, loading a pretrained extractor."""
    from da.registry import BACKBONES
    from da.validators import VALIDATORS

    data, train = config.data, config.train
    k = data.target_labels_per_class
    if k != "all" and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
        raise DAError(f"config key data.target_labels_per_class must be a non-negative integer or all, got {_show(k)}")
    if train.source_weight == 0 and k == 0:
        raise DAError("config key train.source_weight is 0 and data.target_labels_per_class is 0: nothing labelled to "
                      "train on; give target labels (data.target_labels_per_class: 10) or a positive train.source_weight")
    if config.pretrain.load == "extractor" and not config.pretrain.checkpoint:
        raise DAError("config key pretrain.load: extractor needs pretrain.checkpoint (the run whose extractor to load); "
                      "set it, or drop pretrain.load")
    backbone = BACKBONES.get(config.model.backbone)
    if train.batch_norm == "per_domain" and not backbone.batch_norm and not config.model.bottleneck:
        raise DAError(f"config key train.batch_norm: per_domain needs batch-norm layers, and backbone "
                      f"{config.model.backbone} has none; add one with model.bottleneck (e.g. 256) or set train.batch_norm: shared")
    blocks = backbone.blocks(config.model.bottleneck)
    where = f"backbone {config.model.backbone} has blocks (bottom to top): {', '.join(blocks)}"
    for name in config.adapter.blocks():
        if not blocks:
            raise DAError(f"config key adapter.blocks: backbone {config.model.backbone} names no blocks; remove adapter.blocks")
        if name not in blocks:
            raise DAError(f"config key adapter.blocks: no block {name!r}; {where}")
    for name, mult in train.lr_mults.items():
        if not blocks:
            raise DAError(f"config key train.lr_mults: backbone {config.model.backbone} names no blocks; remove train.lr_mults")
        if name not in blocks:
            raise DAError(f"config key train.lr_mults.{name}: no such block; {where}")
        if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not math.isfinite(mult) or mult < 0:
            raise DAError(f"config key train.lr_mults.{name} must be a non-negative number (0 freezes the block), got {_show(mult)}")
    if train.lr_mults and train.extractor == "freeze":
        raise DAError("config key train.lr_mults has no effect with train.extractor: freeze (every block frozen); "
                      "set train.extractor: finetune and give 0 to the blocks to freeze")
    unfreeze = train.unfreeze
    if unfreeze is not None:
        if train.extractor == "freeze":
            raise DAError("config key train.unfreeze needs train.extractor: finetune (it unfreezes the extractor's blocks)")
        if not blocks:
            raise DAError(f"config key train.unfreeze: backbone {config.model.backbone} names no blocks; remove train.unfreeze")
        if (unfreeze.every is None) == (unfreeze.steps is None):
            raise DAError("config key train.unfreeze needs exactly one of every (steps between unfreezings) or steps "
                          "(a list, top block first), e.g. train.unfreeze: {every: 500}")
        if unfreeze.every is not None and unfreeze.every <= 0:
            raise DAError(f"config key train.unfreeze.every must be positive, got {unfreeze.every}")
        steps = unfreeze.steps or []
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in steps):
            raise DAError(f"config key train.unfreeze.steps must list non-negative integers, got {_show(steps)}")
        if len(steps) > len(blocks):
            raise DAError(f"config key train.unfreeze.steps lists {len(steps)} steps but {where}; give at most {len(blocks)}")
        if steps != sorted(steps):
            raise DAError(f"config key train.unfreeze.steps must not decrease (the top block unfreezes first), got {steps}")
    stopping = train.early_stopping
    if stopping is not None:
        if stopping.validator not in VALIDATORS:
            raise DAError(f"config key train.early_stopping.validator must be one of {', '.join(VALIDATORS)} "
                          f"(none reads target labels); got {_show(stopping.validator)}")
        if stopping.patience <= 0:
            raise DAError(f"config key train.early_stopping.patience must be positive (evaluations without "
                          f"improvement before stopping), got {stopping.patience}")


def _check_augment(augment: Optional[AugmentConfig]) -> None:
    if augment is None:
        return
    scale = augment.scale
    if len(scale) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in scale) \
            or not 0 < scale[0] <= scale[1]:
        raise DAError(f"config key data.augment.scale must be [low, high] with 0 < low <= high, e.g. [0.9, 1.3]; "
                      f"got {_show(scale)}")
    if not 0 <= augment.rotate <= 180:
        raise DAError(f"config key data.augment.rotate must be in 0 - 180 degrees, got {augment.rotate}")
    if not 0 <= augment.translate <= 1:
        raise DAError(f"config key data.augment.translate must be in 0 - 1 (a fraction of the image side), "
                      f"got {augment.translate}")
    unknown = [d for d in augment.domains if d not in ("source", "target")]
    if unknown or not augment.domains:
        raise DAError(f"config key data.augment.domains must list source and/or target, got {_show(augment.domains)}")


def _check_batch_sizes(config: Config) -> None:
    """Batches big enough for what trains on them: batch norm needs 2 images, and so do adapters
    whose loss is a covariance or an unbiased MMD (``Adapter.min_batch_size``)."""
    from da.registry import ADAPTERS, BACKBONES

    names = [p.name for p in config.adapter.parts] or [config.adapter.name]
    need = max(ADAPTERS.get(n).min_batch_size for n in names)
    batch_norm = bool(config.model.bottleneck) or BACKBONES.get(config.model.backbone).batch_norm
    checks = [("train.batch_size", config.train.batch_size, config.train.steps > 0)]
    checks.append(("pretrain.batch_size", config.pretrain.batch_size, config.pretrain.steps > 0 and not config.pretrain.checkpoint))
    for key, size, used in checks:
        if not used:
            continue
        if batch_norm and size < 2:
            raise DAError(f"config key {key}={size}: the model's batch norm needs at least 2 images per batch; raise it")
        if key == "train.batch_size" and size < need:
            raise DAError(f"config key {key}={size}: adapter {config.adapter.name!r} needs at least {need} images per "
                          f"domain in a batch (a covariance or an unbiased MMD); raise it")

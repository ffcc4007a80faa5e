"""Cross-field checks of a typed ``Config`` that read the registries: dataset and backbone names
(``da.registry``), image data options, extractor blocks named by ``adapter.blocks``, ``train.lr_mults``
and ``train.unfreeze`` (gradual unfreezing, ULMFiT: Howard and Ruder 2018), per-domain batch norm
(DSBN: Chang et al. 2019), few target labels, early stopping's validator, and batch sizes against
what the model and the adapter need. Checks of single values live in ``da.config.ranges``.
"""
from __future__ import annotations

import math

import da.data  # noqa: F401  (registers the datasets)
import da.models  # noqa: F401  (registers the backbones)
from da.config.schema import Config
from da.config.types import show_value
from da.data.data_options import check_data_options
from da.data.dataset_entry import dataset_spec, spec_label
from da.data.image_domain import check_image_spec
from da.errors import DAError
from da.models.backbone_entry import backbone_entry
from da.registry import ADAPTERS
from da.validators import resolve as resolve_validators


def check_names(config: Config) -> None:
    """``data.source`` / ``data.target`` registered data sets (with their options) or image specs, and a
    registered backbone."""
    sources = config.data.source
    if isinstance(sources, list) and (not sources or not all(isinstance(s, (str, dict)) for s in sources)
                                      or any(isinstance(s, dict) and "name" not in s for s in sources)):
        raise DAError(f"config key data.source must be a dataset name or a list of distinct names (or of "
                      f"{{name: NAME, option: value}}), e.g. [mnist, syndigits, usps]; got {sources!r}")
    targets = config.data.target
    if isinstance(targets, list) and not targets:
        raise DAError("config key data.target is an empty list; give a dataset name, or several for a test-time stream")
    roles = [*((f"data.source[{i}]" if isinstance(sources, list) else "data.source", s)
               for i, s in enumerate(sources if isinstance(sources, list) else [sources])),
             *((f"data.target[{i}]" if isinstance(targets, list) else "data.target", t)
               for i, t in enumerate(targets if isinstance(targets, list) else [targets]))]
    for key, value in roles:
        if isinstance(value, dict) and "name" not in value:
            check_image_spec(value, key)
        elif not isinstance(value, (str, dict)):
            raise DAError(f"config key {key} must be a dataset name or a mapping such as {{folder: DIR}} or "
                          f"{{name: mnist_c, corruption: fog}}, got {show_value(value)}")
        else:
            dataset_spec(value, key)  # the name registered, its options known and of their types
    if isinstance(sources, list):
        labels = [spec_label(s) for s in sources]
        repeated = sorted({name for name in labels if labels.count(name) > 1})
        if repeated:
            raise DAError(f"config key data.source must be a list of distinct names; it lists {', '.join(repeated)} "
                          f"more than once")
    check_data_options(config)
    entry = backbone_entry(config.model)  # the name known, the input size one the model takes
    if config.model.head == "zero_shot" and not entry.text_encoder:
        raise DAError(f"config key model.head: zero_shot embeds class names with a CLIP text tower, and backbone "
                      f"{config.model.backbone} has none; use an open_clip/<arch> backbone or model.head: linear")


def check_transfer(config: Config) -> None:
    """Few target labels, fine-tuning strategies, early stopping, loading a pretrained extractor."""
    data, train = config.data, config.train
    k = data.target_labels_per_class
    if k != "all" and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
        raise DAError(f"config key data.target_labels_per_class must be a non-negative integer or all, got {show_value(k)}")
    if train.source_weight == 0 and k == 0:
        raise DAError("config key train.source_weight is 0 and data.target_labels_per_class is 0: nothing labelled to "
                      "train on; give target labels (data.target_labels_per_class: 10) or a positive train.source_weight")
    if config.pretrain.load == "extractor" and not config.pretrain.checkpoint:
        raise DAError("config key pretrain.load: extractor needs pretrain.checkpoint (the run whose extractor to load); "
                      "set it, or drop pretrain.load")
    backbone = backbone_entry(config.model)
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
    if train.layer_decay is not None and not blocks:
        raise DAError(f"config key train.layer_decay: backbone {config.model.backbone} names no blocks; remove train.layer_decay")
    for name, mult in train.lr_mults.items():
        if not blocks:
            raise DAError(f"config key train.lr_mults: backbone {config.model.backbone} names no blocks; remove train.lr_mults")
        if name not in blocks:
            raise DAError(f"config key train.lr_mults.{name}: no such block; {where}")
        if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not math.isfinite(mult) or mult < 0:
            raise DAError(f"config key train.lr_mults.{name} must be a non-negative number (0 freezes the block), got {show_value(mult)}")
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
            raise DAError(f"config key train.unfreeze.steps must list non-negative integers, got {show_value(steps)}")
        if len(steps) > len(blocks):
            raise DAError(f"config key train.unfreeze.steps lists {len(steps)} steps but {where}; give at most {len(blocks)}")
        if steps != sorted(steps):
            raise DAError(f"config key train.unfreeze.steps must not decrease (the top block unfreezes first), got {steps}")
    check_early_stopping(config)


def check_early_stopping(config: Config) -> None:
    """The validators a run scores are known names, and early stopping watches one of them."""
    train = config.train
    scored = resolve_validators(train.validators)
    stopping = train.early_stopping
    if stopping is None:
        return
    if stopping.validator not in scored:
        raise DAError(f"config key train.early_stopping.validator must be a validator the run scores "
                      f"(train.validators: {', '.join(scored)}; none reads target labels); got {show_value(stopping.validator)}")
    if stopping.patience <= 0:
        raise DAError(f"config key train.early_stopping.patience must be positive (evaluations without "
                      f"improvement before stopping), got {stopping.patience}")


def check_batch_sizes(config: Config) -> None:
    """Batches big enough for what trains on them: batch norm needs 2 images, and so do adapters
    whose loss is a covariance or an unbiased MMD (``Adapter.min_batch_size``)."""
    names = [p.name for p in config.adapter.parts] or [config.adapter.name]
    need = max(ADAPTERS.get(n).min_batch_size for n in names)
    batch_norm = bool(config.model.bottleneck) or backbone_entry(config.model).batch_norm
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

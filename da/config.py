"""YAML configs -> typed, validated ``Config``; ``inherit:`` for shared bases; ``--set`` overrides.

Every error is a ``DAError`` with one line that names the offending key and how to fix it.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from da.errors import DAError

#: Constructor arguments the loop fills in for adapters; a config may not set them.
LOOP_PROVIDED = ("feature_dim", "num_classes")


@dataclass
class AugmentConfig:
    """Random affine augmentation of training batches (da.data.augment); evaluation images are never augmented."""

    rotate: float = 0.0  # degrees: each image turns by a uniform draw in +-rotate
    scale: list[float] = field(default_factory=lambda: [1.0, 1.0])  # zoom range [low, high]; > 1 enlarges
    translate: float = 0.0  # shift in +-translate of the image side
    domains: list[str] = field(default_factory=lambda: ["source"])  # training batches to augment: source, target


@dataclass
class DataConfig:
    root: Optional[str] = None  # None: $DA_DATA_ROOT, else ./data
    source: str = "mnist"
    target: str = "usps"
    source_val_size: int = 5000  # held out from source train for source validation
    split_seed: int = 0  # fixes the source validation split (and the draws below) independently of the run seed
    download: bool = True  # let torchvision download missing data (needs network)
    source_train_size: int = 0  # > 0: a seeded subsample of that many labelled source training images
    #: k > 0: k labelled target train images per class (seeded by split_seed); "all": every target train label
    target_labels_per_class: Union[int, str] = 0
    augment: Optional[AugmentConfig] = None  # e.g. {rotate: 10, scale: [0.9, 1.3], translate: 0.1}


@dataclass
class ModelConfig:
    backbone: str = "lenet"
    pretrained: bool = False  # ImageNet weights (torchvision backbones only)
    bottleneck: Optional[int] = None  # width of a linear + batch-norm + ReLU layer after the backbone (TLlib: 256)


@dataclass
class PretrainConfig:
    """Source-only training of extractor + head before adaptation."""

    steps: int = 0
    lr: float = 0.01
    batch_size: int = 64
    checkpoint: Optional[str] = None  # load from a run's checkpoint.pt instead of training
    load: Literal["all", "extractor"] = "all"  # extractor: keep only the checkpoint's extractor, train a new head


@dataclass
class UnfreezeConfig:
    """Gradual unfreezing (ULMFiT): every block starts frozen; top block first, one more at each step listed."""

    every: Optional[int] = None  # one more block every N adaptation steps
    steps: Optional[list[int]] = None  # or: the adaptation steps after which each block unfreezes, top first


@dataclass
class EarlyStoppingConfig:
    """Stop when ``validator`` has not improved for ``patience`` evaluations; restore its best evaluation."""

    validator: str = "source_val"  # source_val, im, snd or entropy (da.validators): never target labels
    patience: int = 3


@dataclass
class TrainConfig:
    """The adaptation stage: extractor, head and adapter trained jointly."""

    steps: int = 8000
    batch_size: int = 64  # per domain: each step sees batch_size source + batch_size target images
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    lr_schedule: Literal["constant", "inv", "cosine"] = "inv"  # inv: lr (1 + 10 p)^-0.75 (Ganin 2016)
    extractor: Literal["finetune", "freeze"] = "finetune"
    extractor_lr_mult: float = 1.0  # learning-rate multiplier for the pretrained extractor
    adapter_lr_mult: float = 1.0  # learning-rate multiplier for the adapter's own parameters (a discriminator)
    batch_norm: Literal["shared", "per_domain"] = "shared"  # per_domain: DSBN (Chang 2019), da.models.domain_norm
    lr_mults: dict[str, float] = field(default_factory=dict)  # per extractor block, e.g. {conv1: 0.1}; 0 freezes it
    unfreeze: Optional[UnfreezeConfig] = None  # gradual unfreezing of the extractor's blocks, top first
    source_weight: float = 1.0  # weight of the labelled-source cross-entropy (0: learn from target labels only)
    early_stopping: Optional[EarlyStoppingConfig] = None
    fit_samples: int = 10000  # per domain, for closed-form adapters' fit
    eval_every: int = 1000
    log_every: int = 50
    checkpoint_every: int = 2000


@dataclass
class AdapterConfig:
    """One adapter (``name`` and constructor ``kwargs``), or a list of them (``parts``).

    For a list, ``name`` joins the parts' names (``cdan+mmd``) and ``kwargs`` is a flat record of
    the parts' settings and effective weights (``{"cdan/weight": 1.0, "mmd/weight": 0.1,
    "mmd/layer": "logits"}``, keyed as the composite's parts are) so that summaries list them; it
    is not passed to any constructor.
    """

    name: str = "source_only"
    kwargs: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0  # a list's multiplier for a part without its own weight argument; else 1
    parts: list[AdapterConfig] = field(default_factory=list)

    def blocks(self) -> list[str]:
        """The extractor blocks whose outputs the adapter reads (its ``blocks`` argument); [] for the top."""
        return [] if self.parts else list(self.kwargs.get("blocks") or [])


@dataclass
class Config:
    name: Optional[str] = None  # run name; default: the config file's stem
    seed: int = 0
    device: str = "auto"  # auto: cuda when available, else cpu
    deterministic: bool = False  # torch's deterministic algorithms (CPU runs are reproducible without it)
    out_root: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---------------------------------------------------------------- reading files


def read_yaml(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A config file as a dict, with its ``inherit:`` chain merged in (child keys win)."""
    path = Path(path)
    if not path.is_file():
        raise DAError(f"config file {path} does not exist; pass an existing YAML file to -c")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DAError(f"config file {path} is not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DAError(f"config file {path} cannot be read: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DAError(f"config file {path} must hold a mapping of keys to values, not a {type(raw).__name__}")
    base = raw.pop("inherit", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise DAError(f"config file {path}: inherit must be a file path, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in _seen:
        raise DAError(f"config file {path}: inherit loops back to {base_path}")
    return deep_merge(read_yaml(base_path, (*_seen, path.resolve())), raw)


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` laid over ``base``; nested dicts merge, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``key.path=value`` strings; values are parsed as YAML (``lr=1e-3``, ``x=[1,2]``)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise DAError(f"--set {item!r} must look like key=value, e.g. --set train.steps=500")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        raw = set_value(raw, key.strip(), value, f"--set {item!r}")
    return raw


def set_value(raw: dict, key: str, value: Any, what: str) -> dict:
    """A copy of ``raw`` with the dotted ``key`` set to ``value``.

    Naming another adapter (``adapter.name``, or an ``adapter`` section with another name) starts
    that adapter from its defaults: the previous adapter's arguments are not its own.
    """
    raw = dict(raw)
    parts = key.split(".")
    current = raw.get("adapter")
    current_name = current.get("name") if isinstance(current, dict) else None
    new_name = value if parts == ["adapter", "name"] else value.get("name") if parts == ["adapter"] and isinstance(value, dict) else None
    if new_name is not None and new_name != current_name:
        raw["adapter"] = {}
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = {}
        elif not isinstance(child, dict):
            raise DAError(f"{what}: {'.'.join(parts[:i + 1])} is a value, not a section")
        node[part] = child = dict(child)
        node = child
    last = parts[-1]
    node[last] = deep_merge(node[last], value) if isinstance(value, dict) and isinstance(node.get(last), dict) else value
    return raw


# ---------------------------------------------------------------- validation


def build_config(raw: dict) -> Config:
    """Validate a raw dict against ``Config``; adapter keys other than ``name`` become kwargs."""
    raw = dict(raw)
    adapter = raw.pop("adapter", None)
    config = _build_dataclass(Config, raw, "")
    config.adapter = _build_adapter(adapter)
    _check_ranges(config)
    _check_names(config)
    _check_transfer(config)
    _check_augment(config.data.augment)
    return config


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, merge, override and validate a config file."""
    raw = apply_overrides(read_yaml(Path(path)), overrides or [])
    config = build_config(raw)
    if config.name is None:
        config.name = Path(path).stem
    return config


def to_dict(config: Config) -> dict:
    """The config as plain data, in the file format (adapter kwargs beside ``name``; a list stays a list)."""
    out = dataclasses.asdict(config)
    adapter = out.pop("adapter")
    if adapter["parts"]:
        # A part's weight is either in its kwargs (the adapter's own) or the composite's multiplier.
        out["adapter"] = [{"name": p["name"], **({"weight": p["weight"]} if p["weight"] != 1.0 else {}), **p["kwargs"]}
                          for p in adapter["parts"]]
    else:
        out["adapter"] = {"name": adapter["name"], **adapter["kwargs"]}
    order = ["name", "seed", "device", "deterministic", "out_root", "data", "model", "adapter", "pretrain", "train"]
    return {k: out[k] for k in order}


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def _build_dataclass(cls: type, raw: Any, path: str):
    if not isinstance(raw, dict):
        raise DAError(f"config key {path.rstrip('.') or '<top>'} must be a section (a mapping), got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        full = f"{path}{key}"
        if key not in names:
            valid = names + (["adapter"] if cls is Config else [])
            near = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
            hint = f"did you mean {path}{near[0]}?" if near else f"valid keys here: {', '.join(valid)}"
            raise DAError(f"unknown config key {full!r}; {hint}")
        values[key] = _check_type(value, hints[key], full)
    return cls(**values)


def _build_adapter(raw: Any) -> AdapterConfig:
    from da.registry import ADAPTERS
    import da.adapters  # noqa: F401  (registers the built-in adapters)

    if raw is None:
        raw = {}
    if isinstance(raw, list):
        return _build_adapter_list(raw)
    if not isinstance(raw, dict):
        raise DAError(f"config key adapter must be a section with a name, e.g. adapter: {{name: dann}}, "
                      f"or a list of them; got {_show(raw)}")
    raw = dict(raw)
    name = raw.pop("name", "source_only")
    if not isinstance(name, str):
        raise DAError(f"config key adapter.name must be a string, got {_show(name)}")
    cls = ADAPTERS.get(name)
    return AdapterConfig(name, check_kwargs(cls, raw, f"adapter {name!r}", "adapter."))


def _build_adapter_list(raw: list) -> AdapterConfig:
    """``adapter: [{name: cdan}, {name: mmd, weight: 0.1}]``: the parts of a composite, in order.

    Each item takes the keys it would take alone. ``weight`` is the adapter's own argument when it
    has one (so it is applied once, default the adapter's); otherwise the composite's multiplier
    for that part, default 1.
    """
    from da.adapters.compose import part_keys
    from da.registry import ADAPTERS

    if not raw:
        raise DAError("config key adapter is an empty list; list at least one adapter, e.g. adapter: [{name: dann}]")
    parts, record = [], {}
    for i, item in enumerate(raw):
        path = f"adapter[{i}]"
        if not isinstance(item, dict):
            raise DAError(f"config key {path} must be a section with a name, e.g. {{name: dann, weight: 0.5}}; "
                          f"got {_show(item)}")
        item = dict(item)
        if "name" not in item:
            raise DAError(f"config key {path}.name is missing; each adapter in the list needs one, e.g. {{name: dann}}")
        name = item.pop("name")
        if not isinstance(name, str):
            raise DAError(f"config key {path}.name must be a string, got {_show(name)}")
        try:
            cls = ADAPTERS.get(name)
        except DAError as exc:
            raise DAError(f"config key {path}.name: {exc}") from None
        if cls.needs_fit:
            raise DAError(f"config key {path}: adapter {name!r} is closed-form (fitted on features) and cannot be "
                          f"combined with others; use it alone")
        params = settable_params(cls)
        takes = ["weight", *(n for n in params if n != "weight")]
        for key in item:
            if key not in takes and key not in LOOP_PROVIDED:  # loop-provided keys get check_kwargs' message
                near = difflib.get_close_matches(str(key), takes, n=1, cutoff=0.5)
                hint = f"did you mean {near[0]}? " if near else ""
                raise DAError(f"config key {path}.{key}: {hint}adapter {name!r} takes: {', '.join(takes)}")
        weight = 1.0
        if "weight" not in params:
            weight = _check_type(item.pop("weight", 1.0), float, f"{path}.weight")
        kwargs = check_kwargs(cls, item, f"{path} ({name!r})", f"{path}.")
        own = params.get("weight")
        effective = kwargs.get("weight", None if own.default is own.empty else own.default) if own else weight
        if isinstance(effective, (int, float)) and effective < 0:
            raise DAError(f"config key {path}.weight must not be negative, got {effective}")
        parts.append(AdapterConfig(name, kwargs, weight))
        key = part_keys([p.name for p in parts])[-1]
        record.update({f"{key}/{k}": v for k, v in {**kwargs, "weight": effective}.items()})
    return AdapterConfig("+".join(p.name for p in parts), record, 1.0, parts)


def settable_params(cls: type) -> dict[str, inspect.Parameter]:
    """The constructor arguments of ``cls`` that a config may set (keyword-able, not loop-provided)."""
    return {n: p for n, p in inspect.signature(cls).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in LOOP_PROVIDED}


def check_kwargs(cls: type, kwargs: dict, what: str, path: str) -> dict:
    """Validate ``kwargs`` against the constructor of ``cls`` (names and annotated types)."""
    params = settable_params(cls)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:
        hints = {}
    out = {}
    for key, value in kwargs.items():
        if key in LOOP_PROVIDED:
            raise DAError(f"config key {path}{key} is set by the loop from the model; remove it")
        if key not in params:
            near = difflib.get_close_matches(str(key), params, n=1, cutoff=0.5)
            takes = ", ".join(params) or "no arguments"
            hint = f"did you mean {path}{near[0]}? " if near else ""
            raise DAError(f"{what} does not take {key!r}; {hint}it takes: {takes}")
        out[key] = _check_type(value, hints.get(key, Any), f"{path}{key}")
    return out


def _check_type(value: Any, hint: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(value, inner[0], path) if len(inner) == 1 else value
    if origin is Literal:
        if value not in args:
            raise DAError(f"config key {path} must be one of {', '.join(map(str, args))}; got {_show(value)}")
        return value
    if dataclasses.is_dataclass(hint):
        return _build_dataclass(hint, value, f"{path}.")
    if hint is bool:
        if not isinstance(value, bool):
            raise DAError(f"config key {path} must be true or false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DAError(f"config key {path} must be an integer, got {_show(value)}")
        return value
    if hint is float:
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DAError(f"config key {path} must be a number, got {_show(value)}")
        if not math.isfinite(value):
            raise DAError(f"config key {path} must be a finite number, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise DAError(f"config key {path} must be a string, got {_show(value)}")
        return value
    if hint in (tuple, list) or origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise DAError(f"config key {path} must be a list, got {_show(value)}")
        return list(value)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise DAError(f"config key {path} must be a mapping, got {_show(value)}")
        return value
    return value


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
    if config.device not in ("auto", "cpu") and not config.device.startswith(("cuda", "mps")):
        raise DAError(f"config key device must be auto, cpu, cuda or cuda:N, got {config.device!r}")


def _check_names(config: Config) -> None:
    import da.data  # noqa: F401  (registers the datasets)
    import da.models  # noqa: F401  (registers the backbones)
    from da.registry import BACKBONES, DATASETS

    for key, name in (("data.source", config.data.source), ("data.target", config.data.target)):
        if name not in DATASETS:
            DATASETS.get(name)  # raises the error that lists the valid names
    if config.model.backbone not in BACKBONES:
        BACKBONES.get(config.model.backbone)


def _check_transfer(config: Config) -> None:
    """Few target labels, fine-tuning strategies, early stopping, loading a pretrained extractor."""
    from da.models.backbones import block_names
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
    factory = BACKBONES.get(config.model.backbone)
    if train.batch_norm == "per_domain" and not getattr(factory, "batch_norm", True) and not config.model.bottleneck:
        raise DAError(f"config key train.batch_norm: per_domain needs batch-norm layers, and backbone "
                      f"{config.model.backbone} has none; add one with model.bottleneck (e.g. 256) or set train.batch_norm: shared")
    blocks = block_names(factory, config.model.bottleneck)
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


def _show(value: Any) -> str:
    text = repr(value)
    return f"{text[:60]}{'...' if len(text) > 60 else ''} ({type(value).__name__})"

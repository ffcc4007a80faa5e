"""Checks of single config values beyond their type, which need no registry: numeric ranges (sizes,
steps, rates, Adam's betas), the device, and the ranges of ``data.augment``'s random affine
augmentation. ``da.config.build.parse_config`` runs them; the checks that read the registries live in
``da.composition.checks``.
"""
from __future__ import annotations

from typing import Optional

from da.config.schema import AugmentConfig, Config
from da.config.types import show_value
from da.errors import DAError


def check_ranges(config: Config) -> None:
    """Sizes, steps and rates in their ranges (positive, non-negative, in [0, 1)), and a known device."""
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
        "train.sam_rho": config.train.sam_rho,
    }
    if config.model.bottleneck is not None:
        positive["model.bottleneck"] = config.model.bottleneck
    if config.model.input_size is not None:
        positive["model.input_size"] = config.model.input_size
    decay = config.train.layer_decay
    if decay is not None and not 0 < decay <= 1:
        raise DAError(f"config key train.layer_decay must be in (0, 1] (each block down trains at that fraction of the "
                      f"rate of the block above), e.g. 0.65; got {decay}")
    if config.model.head == "zero_shot" and config.model.bottleneck:
        raise DAError("config key model.head: zero_shot reads the CLIP image embedding, and model.bottleneck puts a new "
                      "layer before the head; drop model.bottleneck or use model.head: linear")
    for key, value in positive.items():
        if value <= 0:
            raise DAError(f"config key {key} must be positive, got {value}")
    for key, value in non_negative.items():
        if value < 0:
            raise DAError(f"config key {key} must not be negative, got {value}")
    if not 0 <= config.model.head_dropout < 1:
        raise DAError(f"config key model.head_dropout must be in [0, 1), e.g. 0.5; got {config.model.head_dropout}")
    if config.model.head == "weight_norm" and config.model.head_dropout > 0:
        raise DAError("config key model.head_dropout is for the linear head; model.head: weight_norm has none: set "
                      "model.head_dropout: 0")
    if not 0 <= config.pretrain.label_smoothing < 1:
        raise DAError(f"config key pretrain.label_smoothing must be in [0, 1), e.g. 0.1; got {config.pretrain.label_smoothing}")
    betas = config.train.betas
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise DAError(f"config key train.betas must be two numbers in [0, 1) (Adam's beta1, beta2), e.g. [0.5, 0.999]; "
                      f"got {betas!r}")
    if config.device not in ("auto", "cpu") and not config.device.startswith(("cuda", "mps")):
        raise DAError(f"config key device must be auto, cpu, cuda or cuda:N, got {config.device!r}")


def check_augment(augment: Optional[AugmentConfig]) -> None:
    """``data.augment``: a zoom range, rotation and translation in their ranges, and domains it may augment."""
    if augment is None:
        return
    scale = augment.scale
    if len(scale) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in scale) \
            or not 0 < scale[0] <= scale[1]:
        raise DAError(f"config key data.augment.scale must be [low, high] with 0 < low <= high, e.g. [0.9, 1.3]; "
                      f"got {show_value(scale)}")
    if not 0 <= augment.rotate <= 180:
        raise DAError(f"config key data.augment.rotate must be in 0 - 180 degrees, got {augment.rotate}")
    if not 0 <= augment.translate <= 1:
        raise DAError(f"config key data.augment.translate must be in 0 - 1 (a fraction of the image side), "
                      f"got {augment.translate}")
    unknown = [d for d in augment.domains if d not in ("source", "target")]
    if unknown or not augment.domains:
        raise DAError(f"config key data.augment.domains must list source and/or target, got {show_value(augment.domains)}")

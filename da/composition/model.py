"""The model a config describes, built: the backbone from ``da.registry.BACKBONES`` (``backbone_entry``) (with its optional
bottleneck and per-domain batch norm), a linear head, and the adapter from ``da.registry.ADAPTERS``
(a list of them as a ``Composite``; one copy per source with several sources, as MDAN's
discriminators: Zhao et al. 2018).
"""
from __future__ import annotations

import inspect

import torch

import da.adapters  # noqa: F401  (registers the built-in adapters)
import da.models  # noqa: F401  (registers the backbones)
from da.adapters.base import Adapter, trained_by_stage
from da.adapters.compose import Composite
from da.adapters.per_source import per_source
from da.adapters.source_only import SourceOnly
from da.composition.label_shift import head_extra, open_model
from da.config import LOOP_PROVIDED, AdapterConfig, Config
from da.domains import Domains
from da.errors import DAError
from da.models import linear_head
from da.models.head import weight_norm_head, zero_shot_head
from da.models.backbones import WithBottleneck
from da.models.domain_norm import per_domain
from da.models.pretrained import load_weights
from da.models.backbone_entry import backbone_entry
from da.registry import ADAPTERS
from da.train.model import Model


def build_adapter(config: Config, feature_dim: int, num_classes: int) -> Adapter:
    """Instantiate the configured adapter, passing ``feature_dim``/``num_classes`` if it takes them.

    An adapter list becomes a ``Composite`` of its parts, each built the same way. A method trained by
    a stage of its own (``TrainedByStage``: adda, mcd, subspace) adds no loss: the model's adapter is
    then source_only's zero, and the entry's settings go to its stage.
    """
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
    if not spec.parts and trained_by_stage(ADAPTERS.get(spec.name)):
        return SourceOnly()
    if not spec.parts:
        return per_source(config.data.source, config.train.multi_source, lambda: one(spec, f"adapter {spec.name!r}"))
    return per_source(config.data.source, config.train.multi_source, lambda: Composite(
        [(p.name, one(p, f"adapter[{i}] ({p.name!r})"), p.weight) for i, p in enumerate(spec.parts)]))


def build_model(config: Config, domains: Domains, device: torch.device) -> Model:
    """The configured backbone (with its bottleneck and per-domain batch norm), a linear head and the
    adapter, on ``device``. The slots a stage fills (``da.train.model.Model``) start empty."""
    shape = domains.source_train.input_shape
    entry = backbone_entry(config.model)
    extractor = entry.build(pretrained=config.model.pretrained, in_channels=shape[0])
    if config.model.weights:  # a local state dict, e.g. torchvision's resnet50-11ad3fa6.pth (offline)
        load_weights(extractor, config.model.weights)
    if config.model.bottleneck:
        extractor = WithBottleneck(extractor, config.model.bottleneck)
    norms = per_domain(extractor) if config.train.batch_norm == "per_domain" else []
    if config.train.batch_norm == "per_domain" and not norms:
        raise DAError(f"train.batch_norm: per_domain needs batch-norm layers, and backbone {config.model.backbone} "
                      "has none; add one with model.bottleneck (e.g. 256) or set train.batch_norm: shared")
    # Channels-last convolution weights run LeNet's training step ~1.7x faster on CPU (oneDNN).
    extractor = extractor.to(device).to(memory_format=torch.channels_last)
    # An open-set adapter may add columns to the head (OSBP's unknown class, the last).
    classes = domains.num_classes + head_extra(config)
    if config.model.head == "weight_norm":
        head = weight_norm_head(extractor.out_features, classes)
    elif config.model.head == "zero_shot":
        head = zero_shot_head(extractor, config.model.class_names or list(domains.class_names), classes)
    else:
        head = linear_head(extractor.out_features, classes, config.model.head_dropout)
    adapter = build_adapter(config, extractor.out_features, domains.num_classes).to(device)  # after the head: seeded draws
    return open_model(Model(extractor, head.to(device), adapter, domain_norms=norms), config, domains)

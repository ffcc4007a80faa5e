"""What a backbone is to ``da``: a typed record in ``da.registry.BACKBONES``, registered one way.

A ``BackboneEntry`` carries the factory that builds the feature extractor and what is known of the
network without building it: the input its weights expect (``pretrained_cfg``, the idea of timm's),
whether it has batch-norm layers, the names of its blocks bottom to top (the units fine-tuning
strategies freeze and give learning rates) and its feature width. ``register_backbone`` makes one;
a separate package does the same from a module named in the ``da.backbones`` entry-point group.
Families of names (``timm/<model>``, ``open_clip/<arch>``) make their entries on demand
(``da.registry.Registry.add_family``); ``backbone_entry(config.model)`` is the entry a config
describes, with its ``model.input_size`` and ``model.backbone_kwargs``.
"""
from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from torch import nn

from da.config import ModelConfig
from da.errors import DAError
from da.models.pretrained import IMAGENET, PretrainedCfg
from da.registry import BACKBONES, Record, doc_line

#: ``factory(pretrained, in_channels) -> nn.Module``: a module mapping (N, C, H, W) images to
#: (N, out_features) features, with an ``out_features`` attribute (and ``blocks()`` when it names blocks).
Factory = Callable[..., nn.Module]


@dataclass(frozen=True)
class BackboneEntry(Record):
    """A registered backbone: how to build it, and what configs are checked against before it is built."""

    name: str
    #: One line for listings and messages (by default the factory's docstring's first line).
    description: str
    factory: Factory
    #: Input size, channels, normalisation and default transforms its weights expect.
    pretrained_cfg: PretrainedCfg = IMAGENET
    #: Whether it has batch-norm layers (``train.batch_norm: per_domain`` needs some).
    batch_norm: bool = True
    #: Its blocks, bottom (input side) to top, as ``blocks()`` of the built module names them.
    block_names: tuple[str, ...] = ()
    #: The width of its features, when fixed (None: known once built, from ``out_features``).
    out_features: int | None = None
    #: The distribution that defines the network (its version goes to summary.json's ``backbone_version``).
    library: str = "da"
    #: The weights ``model.pretrained: true`` loads (timm's tag, torchvision's enum name); None: none.
    weights_tag: str | None = None
    #: ``configure(input_size, kwargs) -> BackboneEntry``: the entry built for another input size or
    #: with constructor arguments (timm, open_clip); None: built one way only.
    configure: Optional[Callable[[Optional[int], dict], "BackboneEntry"]] = None
    #: Whether the built module can embed class names (``zero_shot_weights``): a CLIP model's text tower.
    text_encoder: bool = False

    @property
    def origin(self) -> str:
        return f"{self.factory.__module__}.{self.factory.__qualname__}"

    def build(self, pretrained: bool = False, in_channels: int = 1) -> nn.Module:
        """The feature extractor (ImageNet weights when ``pretrained`` and the backbone has them)."""
        return self.factory(pretrained=pretrained, in_channels=in_channels)

    def blocks(self, bottleneck: int | None = None) -> tuple[str, ...]:
        """Its block names, and the bottleneck's after them when a ``model.bottleneck`` tops it;
        () for a backbone that names none."""
        return (*self.block_names, "bottleneck") if self.block_names and bottleneck else self.block_names


def register_backbone(name: str, *, pretrained_cfg: PretrainedCfg = IMAGENET, batch_norm: bool = True,
                      block_names: tuple[str, ...] = (), out_features: int | None = None,
                      description: str | None = None, library: str = "da",
                      weights_tag: str | None = None) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory(pretrained=False, in_channels=1) -> nn.Module`` as the backbone
    ``name`` (a ``BackboneEntry``); returns the factory unchanged. A name already taken is a DAError."""

    def decorate(factory: Factory) -> Factory:
        entry = BackboneEntry(name, description if description is not None else doc_line(factory),
                              factory, pretrained_cfg, batch_norm, tuple(block_names), out_features, library, weights_tag)
        BACKBONES.register(name)(entry)
        return factory

    return decorate


_CONFIGURED: dict[str, BackboneEntry] = {}


def configured(resolve: Callable[..., BackboneEntry], rest: str, input_size: Optional[int],
               kwargs: dict[str, Any]) -> BackboneEntry:
    """``resolve(rest, input_size, kwargs)`` once per distinct arguments: a family's ``configure``
    (the config checks, the data and the model all ask for the same entry)."""
    key = repr((resolve.__module__, rest, input_size, sorted(kwargs.items())))
    if key not in _CONFIGURED:
        _CONFIGURED[key] = resolve(rest, input_size, kwargs)
    return _CONFIGURED[key]


def backbone_entry(model: ModelConfig) -> BackboneEntry:
    """The backbone ``model`` (a config's ``model`` section) describes: its registered entry, built for
    ``model.input_size`` and with ``model.backbone_kwargs`` when given (a one-line DAError when the
    backbone takes neither, or the model cannot take that size)."""
    entry = BACKBONES.get(model.backbone)
    if model.input_size is None and not model.backbone_kwargs:
        return entry
    if entry.configure is None:
        raise DAError(f"config keys model.input_size and model.backbone_kwargs are for timm/ and open_clip/ backbones; "
                      f"backbone {model.backbone} is built one way: drop them")
    return entry.configure(model.input_size, dict(model.backbone_kwargs))


def backbone_record(model: ModelConfig, entry: BackboneEntry) -> dict[str, Any]:
    """summary.json's ``preprocessing``, ``backbone_version`` and ``weights_tag``: what the images were
    resized and normalised to, the library (and version) that defines the network, and the weights
    it started from (a file's name, the tag ``model.pretrained`` loads, or None: initialised at random)."""
    try:
        version = f"{entry.library} {importlib.metadata.version(entry.library)}"
    except importlib.metadata.PackageNotFoundError:
        version = entry.library
    tag = Path(model.weights).name if model.weights else entry.weights_tag if model.pretrained else None
    return {"preprocessing": entry.pretrained_cfg.record(), "backbone_version": version, "weights_tag": tag}

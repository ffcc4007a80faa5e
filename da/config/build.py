"""A raw config dict parsed into a typed ``Config`` without reading any registry: the sections are
built and type-checked (``da.config.types``), the ``adapter`` and ``stages`` sections read by their
shape (``da.config.sections``) and single values checked against their ranges (``da.config.ranges``).
Names and settings that the registries define are checked by ``da.composition.check_config``.
"""
from __future__ import annotations

from da.config.ranges import check_augment, check_ranges
from da.config.schema import Config
from da.config.sections import parse_adapter, parse_stages
from da.config.types import build_dataclass


def parse_config(raw: dict) -> Config:
    """Validate a raw dict against ``Config``; adapter keys other than ``name`` become kwargs (unchecked)."""
    raw = dict(raw)
    adapter = raw.pop("adapter", None)
    stages = raw.pop("stages", None)
    config = build_dataclass(Config, raw, "")
    config.adapter = parse_adapter(adapter)
    config.stages = parse_stages(stages)
    check_ranges(config)
    check_augment(config.data.augment)
    return config

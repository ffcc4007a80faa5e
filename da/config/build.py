"""Validation of a raw config dict into a typed ``Config``: the sections are built and type-checked
(``da.config.checking``), the adapter section becomes an ``AdapterConfig`` with checked constructor
kwargs, and the cross-field and registry checks (``da.config.checks``) run last.
"""
from __future__ import annotations

from da.config.checking import _build_adapter, _build_dataclass
from da.config.checks import _check_augment, _check_batch_sizes, _check_names, _check_ranges, _check_transfer
from da.config.schema import Config
from da.config.stages import build_stages, check_stage_order


def build_config(raw: dict) -> Config:
    """Validate a raw dict against ``Config``; adapter keys other than ``name`` become kwargs."""
    raw = dict(raw)
    adapter = raw.pop("adapter", None)
    stages = raw.pop("stages", None)
    config = _build_dataclass(Config, raw, "")
    config.adapter = _build_adapter(adapter)
    config.stages = build_stages(stages)
    _check_ranges(config)
    _check_names(config)
    _check_transfer(config)
    _check_batch_sizes(config)
    _check_augment(config.data.augment)
    check_stage_order(config)
    return config

"""A run's config, checked against the registries: ``da.config`` parses a file into typed sections
without reading any registry; ``check_config`` then checks the adapter's and the stages' names and
settings against the registered classes, and the cross-field checks that need the registries
(``da.composition.checks``). ``build_config`` and ``load_config`` do both: every config a run or a
benchmark starts from goes through them. Every error is a ``DAError`` with one line.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from da.composition.adapter import check_adapter
from da.composition.checks import check_batch_sizes, check_names, check_transfer
from da.composition.stages import check_stage_order, check_stages
from da.config import Config, parse_config, read_config


def check_config(config: Config) -> Config:
    """``config`` with its adapter and stage settings checked against their classes, after the
    checks that read the registries (names, blocks, batch sizes, the order of the stages)."""
    config = dataclasses.replace(config, adapter=check_adapter(config.adapter), stages=check_stages(config.stages))
    check_names(config)
    check_transfer(config)
    check_batch_sizes(config)
    check_stage_order(config)
    return config


def build_config(raw: dict) -> Config:
    """A raw dict (a config file's content) as a checked ``Config``."""
    return check_config(parse_config(raw))


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, merge, override and check a config file (``--set key=value`` strings in ``overrides``)."""
    return check_config(read_config(path, overrides))

"""The ``adapter`` and ``stages`` sections read into ``AdapterConfig`` / ``StageConfig`` by their shape
alone: a section with a name, a list of them, or a stage's bare name. Their names and settings are
checked against the registered classes later, by ``da.composition`` (``check_adapter``,
``check_stages``); the settings stay as the file gives them until then.
"""
from __future__ import annotations

from typing import Any

from da.config.schema import AdapterConfig, StageConfig
from da.config.types import show_value
from da.errors import DAError


def parse_adapter(raw: Any) -> AdapterConfig:
    """``adapter:`` as an ``AdapterConfig`` (default ``source_only``), or a list of parts (a composite)."""
    if raw is None:
        raw = {}
    if isinstance(raw, list):
        return _parse_adapter_list(raw)
    if not isinstance(raw, dict):
        raise DAError(f"config key adapter must be a section with a name, e.g. adapter: {{name: dann}}, "
                      f"or a list of them; got {show_value(raw)}")
    raw = dict(raw)
    name = raw.pop("name", "source_only")
    if not isinstance(name, str):
        raise DAError(f"config key adapter.name must be a string, got {show_value(name)}")
    return AdapterConfig(name, raw)


def _parse_adapter_list(raw: list) -> AdapterConfig:
    """``adapter: [{name: cdan}, {name: mmd, weight: 0.1}]``: the parts, each with its keys as given
    (``weight`` among them: whose it is, the adapter's or the composite's, the registry tells)."""
    if not raw:
        raise DAError("config key adapter is an empty list; list at least one adapter, e.g. adapter: [{name: dann}]")
    parts = []
    for i, item in enumerate(raw):
        path = f"adapter[{i}]"
        if not isinstance(item, dict):
            raise DAError(f"config key {path} must be a section with a name, e.g. {{name: dann, weight: 0.5}}; "
                          f"got {show_value(item)}")
        item = dict(item)
        if "name" not in item:
            raise DAError(f"config key {path}.name is missing; each adapter in the list needs one, e.g. {{name: dann}}")
        name = item.pop("name")
        if not isinstance(name, str):
            raise DAError(f"config key {path}.name must be a string, got {show_value(name)}")
        parts.append(AdapterConfig(name, item))
    return AdapterConfig("+".join(p.name for p in parts), {}, 1.0, parts)


def parse_stages(raw: Any) -> list[StageConfig] | None:
    """``stages:`` from the file as ``StageConfig``s (None when the key is absent), each stage once."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise DAError(f"config key stages must be a non-empty list of stage names or {{name: ...}} sections, "
                      f"e.g. stages: [pretrain, adapt]; got {show_value(raw)}")
    out = []
    for i, item in enumerate(raw):
        item = {"name": item} if isinstance(item, str) else item
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise DAError(f"config key stages[{i}] must be a stage name or a section with a name, e.g. {{name: shot}}; "
                          f"got {show_value(item)}")
        item = dict(item)
        out.append(StageConfig(item.pop("name"), item))
    names = [s.name for s in out]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DAError(f"config key stages lists {', '.join(repeated)} more than once; list each stage once")
    return out

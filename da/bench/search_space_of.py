"""The search space of a run's config: the ranges its adapter and stages declare, with ``--space``
entries laid over them, each key checked against the config before a search starts."""
from __future__ import annotations

import copy
from typing import Any

from da.composition import build_config
from da.composition.stages import stage_specs
from da.config import Config, to_dict
from da.config.search_space import Param, parse_space_flag
from da.errors import DAError
from da.registry import ADAPTERS, STAGES


def declared_space(config: Config) -> dict[str, Param]:
    """``adapter.<arg>`` for the adapter's declared ranges (a single adapter: a list composes parts
    whose ranges are not searched), and each stage's (``stage.<arg>`` resolved to its entry)."""
    space: dict[str, Param] = {}
    if not config.adapter.parts:
        space.update({f"adapter.{k}": v for k, v in ADAPTERS.get(config.adapter.name).search_space.items()})
    for name, _ in stage_specs(config):
        for key, param in STAGES.get(name).search_space.items():
            space[f"stages.{name}.{key[len('stage.'):]}" if key.startswith("stage.") else key] = param
    return space


def search_space(config: Config, flags: list[str]) -> dict[str, Param]:
    """The declared space with ``--space`` flags over it, checked: every key reaches a setting of
    this config (a one-line error names the first that does not)."""
    space = declared_space(config)
    for flag in flags:
        key, param = parse_space_flag(flag)
        space[key] = param
    if not space:
        raise DAError(f"nothing to search: adapter {config.adapter.name} and the run's stages declare no range; "
                      f"give one with --space KEY=SPEC, e.g. --space train.lr=log:0.001:0.05")
    base = to_dict(config)
    for key, param in space.items():
        apply(base, {key: param.middle()})
    return dict(sorted(space.items()))


def apply(raw: dict[str, Any], values: dict[str, Any]) -> Config:
    """``raw`` (a config in file format) with ``values`` set, as a checked config. A key that names
    no setting of this config is a one-line error."""
    raw = copy.deepcopy(raw)
    for key, value in values.items():
        parts = key.split(".")
        if parts[0] == "stages":
            _set_stage(raw, parts, value, key)
            continue
        node = raw
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise DAError(f"search space key {key!r} names no setting of this config (no section {part!r}); "
                              f"keys look like train.lr or adapter.weight")
            node = node[part]
        if parts[0] != "adapter" and parts[-1] not in node:
            raise DAError(f"search space key {key!r} names no setting of this config; keys look like train.lr or adapter.weight")
        node[parts[-1]] = value
    try:
        return build_config(raw)
    except DAError as exc:
        raise DAError(f"search space {', '.join(values)}: {exc}") from None


def _set_stage(raw: dict[str, Any], parts: list[str], value: Any, key: str) -> None:
    if len(parts) != 3:
        raise DAError(f"search space key {key!r}: a stage's setting is stages.<stage name>.<argument>")
    entries = raw.get("stages") or []
    for i, entry in enumerate(entries):
        name = entry if isinstance(entry, str) else entry.get("name")
        if name == parts[1]:
            entries[i] = {"name": name, **({} if isinstance(entry, str) else entry), parts[2]: value}
            return
    raise DAError(f"search space key {key!r}: the config's stages list no {parts[1]!r}")

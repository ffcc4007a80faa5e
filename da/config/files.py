"""Config files as plain data: reading YAML with its ``inherit:`` chain (child keys win over the base
file's), merging dicts, applying ``--set key.path=value`` overrides, and writing a ``Config`` back out
in the file format (``to_dict``, ``dump_yaml``). ``read_config`` ties reading, overriding and
parsing (``da.config.build.parse_config``) together; ``da.composition.load_config`` adds the checks
against the registries. Every error is a ``DAError`` with one line.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from da.config.build import parse_config
from da.config.schema import Config
from da.errors import DAError


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last one
    silently: two benchmark labels or two ``lr`` lines would hide one setting)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice in one mapping",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A config file as a dict, with its ``inherit:`` chain merged in (child keys win)."""
    path = Path(path)
    if not path.is_file():
        raise DAError(f"config file {path} does not exist; pass an existing YAML file to -c")
    try:
        raw = yaml.load(path.read_text(), Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
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


def read_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, merge, override and parse a config file (no registry read: ``da.composition.load_config`` checks it)."""
    raw = apply_overrides(read_yaml(Path(path)), overrides or [])
    config = parse_config(raw)
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
    if config.stages is not None:  # absent unless given, so configs written before the key stay the same
        out["stages"] = [{"name": s.name, **s.kwargs} if s.kwargs else s.name for s in config.stages]
    order = ["name", "seed", "device", "deterministic", "out_root", "data", "model", "adapter", "pretrain", "train",
             "stages"]
    return {k: out[k] for k in order if k in out}


def dump_yaml(config: Config) -> str:
    """The config as YAML text, in the file format."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def flat_keys(tree: dict) -> dict[str, Any]:
    """A nested mapping as dotted keys: ``{"train": {"lr": 0.01}}`` -> ``{"train.lr": 0.01}``."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}{k}.", v)
        else:
            out[prefix[:-1]] = node

    walk("", tree)
    return out

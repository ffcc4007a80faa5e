"""Type checking of raw config data: building the schema's dataclasses from dicts (unknown keys get a
"did you mean" hint), checking values against type hints (bool, int, float, str, list, dict, Literal,
Optional), and validating adapter sections, alone or as a list of parts, against the constructor
arguments of the registered adapter classes. Every error is a ``DAError`` naming the offending key.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import types
import typing
from typing import Any, Literal

from da.adapters.base import check_adapter_class, trained_by_stage
from da.config.schema import LOOP_PROVIDED, AdapterConfig, Config
from da.errors import DAError


def _build_dataclass(cls: type, raw: Any, path: str):
    if not isinstance(raw, dict):
        raise DAError(f"config key {path.rstrip('.') or '<top>'} must be a section (a mapping), got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        full = f"{path}{key}"
        if key not in names:
            valid = names + (["adapter", "stages"] if cls is Config else [])
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
    check_adapter_class(name, cls)
    stage = trained_by_stage(cls)
    if stage is not None:  # its keys are its stage's settings
        from da.registry import STAGES
        import da.stages  # noqa: F401  (registers the built-in stages)

        return AdapterConfig(name, check_kwargs(STAGES.get(stage), raw, f"adapter {name!r} (stage {stage!r})", "adapter."))
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
        check_adapter_class(name, cls)
        if trained_by_stage(cls):
            raise DAError(f"config key {path}: adapter {name!r} is trained by stage {trained_by_stage(cls)!r}, not a loss, "
                          f"so it cannot join an adapter list; use it alone (adapter: {{name: {name}}}), or list only losses")
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


def _show(value: Any) -> str:
    text = repr(value)
    return f"{text[:60]}{'...' if len(text) > 60 else ''} ({type(value).__name__})"

"""Type checking of raw config values: building the schema's dataclasses from dicts (unknown keys get
a "did you mean" hint), checking values against type hints (bool, int, float, str, list, dict,
Literal, Optional), and checking keyword arguments against a class's constructor (``check_kwargs``;
``da.composition`` passes the registered adapter and stage classes). No registry is read here.
Every error is a ``DAError`` naming the offending key.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import types
import typing
from typing import Any, Literal

from da.config.schema import LOOP_PROVIDED, Config
from da.errors import DAError


def build_dataclass(cls: type, raw: Any, path: str) -> Any:
    """``cls`` built from the mapping ``raw`` at ``path``, each value checked against its field's type."""
    if not isinstance(raw, dict):
        raise DAError(f"config key {path.rstrip('.') or '<top>'} must be a section (a mapping), got {show_value(raw)}")
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
        values[key] = check_type(value, hints[key], full)
    return cls(**values)


def settable_params(cls: type) -> dict[str, inspect.Parameter]:
    """The constructor arguments of ``cls`` that a config may set (keyword-able, not loop-provided)."""
    return {n: p for n, p in inspect.signature(cls).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in LOOP_PROVIDED}


def check_kwargs(cls: type, kwargs: dict, what: str, path: str) -> dict:
    """Validate ``kwargs`` against the constructor of ``cls`` (names and annotated types)."""
    params = settable_params(cls)
    try:
        # a dataclass's fields resolve in the modules that declare them (a subclass's __init__ may not see them)
        hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else typing.get_type_hints(cls.__init__)
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
        out[key] = check_type(value, hints.get(key, Any), f"{path}{key}")
    return out


def check_type(value: Any, hint: Any, path: str) -> Any:
    """``value`` checked against the type ``hint`` (a float given as a string such as 1e-3 is converted)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return check_type(value, inner[0], path) if len(inner) == 1 else value
    if origin is Literal:
        if value not in args:
            raise DAError(f"config key {path} must be one of {', '.join(map(str, args))}; got {show_value(value)}")
        return value
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, f"{path}.")
    if hint is bool:
        if not isinstance(value, bool):
            raise DAError(f"config key {path} must be true or false, got {show_value(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DAError(f"config key {path} must be an integer, got {show_value(value)}")
        return value
    if hint is float:
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DAError(f"config key {path} must be a number, got {show_value(value)}")
        if not math.isfinite(value):
            raise DAError(f"config key {path} must be a finite number, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise DAError(f"config key {path} must be a string, got {show_value(value)}")
        return value
    if hint in (tuple, list) or origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise DAError(f"config key {path} must be a list, got {show_value(value)}")
        return list(value)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise DAError(f"config key {path} must be a mapping, got {show_value(value)}")
        return value
    return value


def show_value(value: Any) -> str:
    """``value`` for an error message: its repr, cut at 60 characters, and its type."""
    text = repr(value)
    return f"{text[:60]}{'...' if len(text) > 60 else ''} ({type(value).__name__})"

"""The ``adapter`` section checked against the registered adapters (``da.registry.ADAPTERS``): the name,
and the settings against the adapter class's constructor, alone or as a list of parts (a composite,
``da.adapters.compose``). ``da.config.sections`` read the section's shape; this gives its settings
their types and, for a list, decides whose each ``weight`` is.
"""
from __future__ import annotations

import difflib
from typing import Any

import da.adapters  # noqa: F401  (registers the built-in adapters)
import da.stages  # noqa: F401  (registers the built-in stages)
from da.adapters.base import check_adapter_class, trained_by_stage
from da.adapters.compose import part_keys
from da.config.schema import LOOP_PROVIDED, AdapterConfig
from da.config.types import check_kwargs, check_type, settable_params
from da.errors import DAError
from da.registry import ADAPTERS, STAGES


def check_adapter(spec: AdapterConfig) -> AdapterConfig:
    """``spec`` (as ``da.config`` parsed it) with its adapter registered and its settings checked."""
    if spec.parts:
        return _check_adapter_list(spec.parts)
    cls = ADAPTERS.get(spec.name)
    check_adapter_class(spec.name, cls)
    stage = trained_by_stage(cls)
    if stage is not None:  # its keys are its stage's settings
        return AdapterConfig(spec.name, check_kwargs(STAGES.get(stage), spec.kwargs, f"adapter {spec.name!r} (stage {stage!r})",
                                                     "adapter."))
    return AdapterConfig(spec.name, check_kwargs(cls, spec.kwargs, f"adapter {spec.name!r}", "adapter."))


def _check_adapter_list(parts: list[AdapterConfig]) -> AdapterConfig:
    """``adapter: [{name: cdan}, {name: mmd, weight: 0.1}]``: the parts of a composite, in order.

    Each item takes the keys it would take alone. ``weight`` is the adapter's own argument when it
    has one (so it is applied once, default the adapter's); otherwise the composite's multiplier
    for that part, default 1. ``kwargs`` of the result records every part's settings and effective
    weight, keyed as the composite keys its parts.
    """
    checked, record = [], {}
    for i, part in enumerate(parts):
        spec, effective = _check_part(i, part)
        checked.append(spec)
        key = part_keys([p.name for p in checked])[-1]
        record.update({f"{key}/{k}": v for k, v in {**spec.kwargs, "weight": effective}.items()})
    return AdapterConfig("+".join(p.name for p in checked), record, 1.0, checked)


def _check_part(i: int, part: AdapterConfig) -> tuple[AdapterConfig, Any]:
    """Part ``i`` of an adapter list, checked; and its effective weight (its own, or the multiplier)."""
    path, name = f"adapter[{i}]", part.name
    item = dict(part.kwargs)
    if part.weight != 1.0 and "weight" not in item:  # a part checked before: its multiplier back in place
        item["weight"] = part.weight
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
        weight = check_type(item.pop("weight", 1.0), float, f"{path}.weight")
    kwargs = check_kwargs(cls, item, f"{path} ({name!r})", f"{path}.")
    own = params.get("weight")
    effective = kwargs.get("weight", None if own.default is own.empty else own.default) if own else weight
    if isinstance(effective, (int, float)) and effective < 0:
        raise DAError(f"config key {path}.weight must not be negative, got {effective}")
    return AdapterConfig(name, kwargs, weight), effective

"""The ``stages`` list: each item a registered stage's name or ``{name: ..., setting: value}``,
checked against the stage's constructor like an adapter's kwargs, and its order checked. ``da.config``
read the list's shape; the names and settings are checked here, against ``da.registry.STAGES``."""
from __future__ import annotations

from typing import Any

import da.stages  # noqa: F401  (registers the built-in stages)
from da.adapters.base import trained_by_stage
from da.config.schema import Config, StageConfig
from da.config.types import check_kwargs
from da.errors import DAError
from da.registry import ADAPTERS, STAGES
from da.stages.adapt import sharpness_aware


def check_stages(stages: list[StageConfig] | None) -> list[StageConfig] | None:
    """``stages`` (as ``da.config`` parsed them) with each name registered and its settings checked."""
    if stages is None:
        return None
    out = []
    for i, spec in enumerate(stages):
        path = f"stages[{i}]"
        name, item = spec.name, spec.kwargs
        try:
            cls = STAGES.get(name)
        except DAError as exc:
            raise DAError(f"config key {path}.name: {exc}") from None
        out.append(StageConfig(name, check_kwargs(cls, item, f"stage {name!r}", f"{path}.")))
    return out


def build_stage(name: str, kwargs: dict[str, Any]) -> Any:
    """The registered stage ``name`` with its settings (a value it refuses: one line naming it)."""
    try:
        return STAGES.get(name)(**kwargs)
    except (TypeError, ValueError) as exc:
        raise DAError(f"stage {name!r} rejected its settings {kwargs}: {exc}") from None


def method_stage(config: Config) -> str | None:
    """The stage that trains the configured adapter entry when it is a ``TrainedByStage`` one (adda,
    mcd, subspace), else None (a loss, or a list of losses, trained by ``adapt``)."""
    return None if config.adapter.parts else trained_by_stage(ADAPTERS.get(config.adapter.name))


def stage_specs(config: Config) -> list[tuple[str, dict[str, Any]]]:
    """The run's stages as (name, settings): the ``stages`` list, else pretrain (when it trains or
    loads) and the adapter's stage (``adapt``, or the stage a ``TrainedByStage`` entry names, which
    takes the ``adapter`` section's keys as its settings)."""
    method = method_stage(config)
    main = (method, dict(config.adapter.kwargs)) if method else ("adapt", {})
    if config.stages is None:
        pretrain = [("pretrain", {})] if config.pretrain.steps > 0 or config.pretrain.checkpoint else []
        return [*pretrain, main]
    out = [(s.name, dict(s.kwargs)) for s in config.stages]
    if method is None:
        return out
    names = [name for name, _ in out]
    if method not in names:
        listed = ", ".join(n if n != "adapt" else method for n in names) if "adapt" in names else ", ".join([*names, method])
        raise DAError(f"adapter {config.adapter.name!r} is trained by stage {method!r}, which config key stages "
                      f"({', '.join(names)}) does not list; write stages: [{listed}]")
    at = names.index(method)
    both = sorted(k for k in out[at][1] if k in main[1] and out[at][1][k] != main[1][k])
    if both:
        raise DAError(f"config keys adapter.{both[0]} and stages[{at}].{both[0]} give stage {method!r} different "
                      f"values; set it in one place")
    out[at] = (method, {**main[1], **out[at][1]})
    return out


def check_stage_order(config: Config) -> None:
    """The stages the run will have: a stage that needs a source-trained model comes after one that
    trains on the source (or the run loads one, ``pretrain.checkpoint``); a stage that needs a slot of
    the model comes after one that fills it; each stage's own cross-field checks pass."""
    specs = stage_specs(config)
    stages = [build_stage(name, kwargs) for name, kwargs in specs]
    if config.stages is not None and not any(stage.evaluates for stage in stages):
        raise DAError(f"config key stages ({', '.join(s.name for s in config.stages)}) holds no stage that evaluates the "
                      f"model; add adapt (with train.steps: 0 it only evaluates), e.g. stages: [pretrain, adapt]")
    check_test_time(config, specs, stages)
    source_model, filled = bool(config.pretrain.checkpoint), set()
    for i, ((name, _), stage) in enumerate(zip(specs, stages)):
        if name == "pretrain":
            source_model = source_model or config.pretrain.steps > 0
        elif stage.trains_on_source:
            source_model = True
        if stage.needs_source_model and not source_model:
            raise DAError(f"config key stages[{i}]: stage {name!r} needs a model trained on the source first; "
                          f"put pretrain (with pretrain.steps > 0) before it, or set pretrain.checkpoint to a source "
                          f"model's checkpoint.pt")
        missing = [slot for slot in stage.needs_slots if slot not in filled]
        if missing:
            fillers = sorted(n for n, cls in STAGES.items() if set(missing) & set(cls.fills_slots))
            raise DAError(f"config key stages[{i}]: stage {name!r} needs the model's {', '.join(missing)} slot, which no "
                          f"stage before it fills; put {' or '.join(fillers) or 'a stage that fills it'} before it")
        filled.update(stage.fills_slots)
        stage.check(config)
    if config.train.sam_rho > 0 and not any(sharpness_aware(stage) for stage in stages):
        raise DAError(f"config key train.sam_rho={config.train.sam_rho} makes the adapt stage's step sharpness-aware "
                      f"(SDAT), and this run ({', '.join(name for name, _ in specs)}) has no adapt stage; set "
                      f"train.sam_rho: 0")


def check_test_time(config: Config, specs: list[tuple[str, dict[str, Any]]], stages: list[Any]) -> None:
    """At most one test-time stage (it owns the run's online scores), and a list of target domains
    (a stream) only for one: the other stages adapt to one target."""
    streams = [name for (name, _), stage in zip(specs, stages) if stage.test_time]
    if len(streams) > 1:
        raise DAError(f"config key stages lists {len(streams)} test-time stages ({', '.join(streams)}); a run adapts "
                      f"on one stream: keep one, and compare methods in separate runs (da bench)")
    if isinstance(config.data.target, list):
        others = [name for (name, _), stage in zip(specs, stages) if not stage.test_time and name != "pretrain"]
        if not streams or others:
            raise DAError(f"config key data.target lists {len(config.data.target)} domains, a stream for a test-time "
                          f"stage (norm, tent, ...), but stage {(others or ['adapt'])[0]!r} adapts to one target; give "
                          f"data.target one domain, or stages: [pretrain, tent]")
        if len({str(t) for t in config.data.target}) < len(config.data.target):
            raise DAError("config key data.target lists a domain twice; a stream sees each image once: list each "
                          "domain once (stage key rounds walks the sequence again)")

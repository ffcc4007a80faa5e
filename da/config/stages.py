"""The ``stages`` list: each item a registered stage's name or ``{name: ..., setting: value}``,
checked against the stage's constructor like an adapter's kwargs, and its order checked."""
from __future__ import annotations

from typing import Any

from da.config.checking import _show, check_kwargs
from da.config.schema import Config, StageConfig
from da.errors import DAError


def build_stages(raw: Any) -> list[StageConfig] | None:
    """``stages:`` from the file as ``StageConfig``s (None when the key is absent)."""
    from da.registry import STAGES
    import da.stages  # noqa: F401  (registers the built-in stages)

    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise DAError(f"config key stages must be a non-empty list of stage names or {{name: ...}} sections, "
                      f"e.g. stages: [pretrain, adapt]; got {_show(raw)}")
    out = []
    for i, item in enumerate(raw):
        path = f"stages[{i}]"
        item = {"name": item} if isinstance(item, str) else item
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise DAError(f"config key {path} must be a stage name or a section with a name, e.g. {{name: shot}}; "
                          f"got {_show(item)}")
        item = dict(item)
        name = item.pop("name")
        try:
            cls = STAGES.get(name)
        except DAError as exc:
            raise DAError(f"config key {path}.name: {exc}") from None
        out.append(StageConfig(name, check_kwargs(cls, item, f"stage {name!r}", f"{path}.")))
    names = [s.name for s in out]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DAError(f"config key stages lists {', '.join(repeated)} more than once; list each stage once")
    return out


def build_stage(name: str, kwargs: dict[str, Any]) -> Any:
    """The registered stage ``name`` with its settings (a value it refuses: one line naming it)."""
    from da.registry import STAGES

    try:
        return STAGES.get(name)(**kwargs)
    except (TypeError, ValueError) as exc:
        raise DAError(f"stage {name!r} rejected its settings {kwargs}: {exc}") from None


def method_stage(config: Config) -> str | None:
    """The stage that trains the configured adapter entry when it is a ``TrainedByStage`` one (adda,
    mcd, subspace), else None (a loss, or a list of losses, trained by ``adapt``)."""
    from da.adapters.base import trained_by_stage
    from da.registry import ADAPTERS

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
    from da.registry import STAGES

    specs = stage_specs(config)
    stages = [build_stage(name, kwargs) for name, kwargs in specs]
    if config.stages is not None and not any(stage.evaluates for stage in stages):
        raise DAError(f"config key stages ({', '.join(s.name for s in config.stages)}) holds no stage that evaluates the "
                      f"model; add adapt (with train.steps: 0 it only evaluates), e.g. stages: [pretrain, adapt]")
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

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


def check_stage_order(config: Config) -> None:
    """A stage that needs a source-trained model comes after one that trains on the source, or the
    run loads one (``pretrain.checkpoint``)."""
    from da.registry import STAGES

    if config.stages is None:
        return
    if not any(STAGES.get(spec.name).evaluates for spec in config.stages):
        raise DAError(f"config key stages ({', '.join(s.name for s in config.stages)}) holds no stage that evaluates the "
                      f"model; add adapt (with train.steps: 0 it only evaluates), e.g. stages: [pretrain, adapt]")
    source_model = bool(config.pretrain.checkpoint)
    for i, spec in enumerate(config.stages):
        cls = STAGES.get(spec.name)
        if spec.name == "pretrain":
            source_model = source_model or config.pretrain.steps > 0
        elif cls.trains_on_source:
            source_model = True
        if cls.needs_source_model and not source_model:
            raise DAError(f"config key stages[{i}]: stage {spec.name!r} needs a model trained on the source first; "
                          f"put pretrain (with pretrain.steps > 0) before it, or set pretrain.checkpoint to a source "
                          f"model's checkpoint.pt")

"""The ``stages`` list: each item a registered stage's name or ``{name: ..., setting: value}``,
checked against the stage's constructor like an adapter's kwargs, and its order checked. ``da.config``
read the list's shape; the names and settings are checked here, against ``da.registry.STAGES``."""
from __future__ import annotations

import da.stages  # noqa: F401  (registers the built-in stages)
from da.config.schema import Config, StageConfig
from da.config.types import check_kwargs
from da.errors import DAError
from da.registry import STAGES


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


def check_stage_order(config: Config) -> None:
    """A stage that needs a source-trained model comes after one that trains on the source, or the
    run loads one (``pretrain.checkpoint``)."""
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

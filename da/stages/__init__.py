"""Stages a run is made of (registered in ``da.registry.STAGES``); see ``da.stages.base``."""
from da.stages import adapt, fit, pretrain, self_train, shot  # noqa: F401  (registration)
from da.stages.base import OptimSettings, ParamGroup, Stage, Update

__all__ = ["OptimSettings", "ParamGroup", "Stage", "Update"]

"""Stages a run is made of (registered in ``da.registry.STAGES``); see ``da.stages.base``."""
from da.stages import adapt, adda, eata, mcd, norm, pretrain, sar, self_train, shot, subspace, tent  # noqa: F401  (registration)
from da.stages.base import OptimSettings, ParamGroup, Stage, Update

__all__ = ["OptimSettings", "ParamGroup", "Stage", "Update"]

"""Stages a run is made of (registered in ``da.registry.STAGES``); see ``da.stages.base``."""
from da.stages import (  # noqa: F401  (registration)
    adapt, adda, cotta, eata, lame, mcd, norm, pretrain, sar, self_train, shot, subspace, tent,
)
from da.stages.base import OptimSettings, ParamGroup, Stage, Update

__all__ = ["OptimSettings", "ParamGroup", "Stage", "Update"]

"""Registry entries for the methods that train in their own way: each names the stage that trains it.

``adapter: {name: subspace}`` (or ``adda``, ``mcd``) keeps the name users know; its keys are the
settings of the stage of the same name (``da.stages.subspace``, ``da.stages.adda``, ``da.stages.mcd``),
which the run lists in place of ``adapt``.
"""
from da.adapters.base import TrainedByStage
from da.registry import register_adapter


@register_adapter("subspace")
class SubspaceEntry(TrainedByStage):
    description = "subspace alignment: closed-form map between PCA bases (Fernando 2013)"
    stage = "subspace"


@register_adapter("adda")
class ADDAEntry(TrainedByStage):
    description = "adversarial discriminative: own target encoder vs a discriminator, alternating (Tzeng 2017)"
    stage = "adda"


@register_adapter("mcd")
class MCDEntry(TrainedByStage):
    description = "maximum classifier discrepancy: two heads, steps A / B / C (Saito 2018)"
    stage = "mcd"

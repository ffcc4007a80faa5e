"""No alignment: the task loss on source labels alone (empirical risk minimisation)."""
from da.adapters.base import Adapter
from da.registry import register_adapter


@register_adapter("source_only")
class SourceOnly(Adapter):
    """No alignment: train on labelled source only (the lower bound every adapter must beat)."""

    description = "no alignment; task loss on labelled source only (ERM baseline)"
    aligns_by_gradient = False

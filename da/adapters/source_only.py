"""No alignment: the task loss on source labels alone (empirical risk minimisation)."""
from torch import Tensor

from da.adapters.base import Adapter
from da.registry import register_adapter


@register_adapter("source_only")
class SourceOnly(Adapter):
    """No alignment: train on labelled source only (the lower bound every adapter must beat)."""

    description = "no alignment; task loss on labelled source only (ERM baseline)"
    aligns_by_gradient = False

    def loss(self, f_s: Tensor, f_t: Tensor, *, logits_s: Tensor, logits_t: Tensor, y_s: Tensor,
             progress: float) -> tuple[Tensor, dict[str, Tensor]]:
        return f_s.new_zeros(()), {}

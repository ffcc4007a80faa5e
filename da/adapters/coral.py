"""Deep CORAL: match second-order statistics of source and target features.

Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation", ECCV-W 2016.
The loss is pytorch-adapt's ``CORALLoss``, ||C_s - C_t||_F^2 / (4 d^2).
"""
from __future__ import annotations


from da.adapters.base import Adapter
from da.registry import register_adapter


@register_adapter("coral")
class CORAL(Adapter):
    """Deep CORAL (Sun & Saenko 2016): align feature covariances."""

    description = "Deep CORAL: align source and target feature covariances (Sun & Saenko 2016)"

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight
        from pytorch_adapt.layers import CORALLoss  # imported here: it pulls in torchmetrics (seconds)

        self.coral = CORALLoss()

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        value = self.coral(f_s, f_t)
        return self.weight * value, {"coral": value.detach()}

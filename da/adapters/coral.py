"""Deep CORAL: match second-order statistics of source and target features.

Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation", ECCV-W 2016.
The loss is pytorch-adapt's ``CORALLoss``, ||C_s - C_t||_F^2 / (4 d^2).
"""
from __future__ import annotations


from da.adapters.base import LAYERS, Adapter, check_choice, layer_pairs
from da.registry import register_adapter
from da.config.search_space import log_uniform


@register_adapter("coral")
class CORAL(Adapter):
    """Deep CORAL (Sun & Saenko 2016): align feature covariances."""

    search_space = {"weight": log_uniform(0.1, 100.0)}

    min_batch_size = 2  # a covariance divides by n - 1

    description = "Deep CORAL: align source and target feature covariances (Sun & Saenko 2016)"

    def __init__(self, weight: float = 1.0, layer: str = "logits") -> None:
        """``layer``: align ``features``, the head's ``logits`` (the paper's fc8), or ``both``."""
        super().__init__()
        check_choice("coral", "layer", layer, LAYERS)
        self.weight = weight
        self.layer = layer
        from pytorch_adapt.layers import CORALLoss  # imported here: it pulls in torchmetrics (seconds)

        self.coral = CORALLoss()

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        value = sum(self.coral(s, t) for s, t in layer_pairs(self.layer, f_s, f_t, logits_s, logits_t))
        return self.weight * value, {"coral": value.detach()}

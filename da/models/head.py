"""Task heads: a linear classifier on (possibly adapted) features, and a nearest-neighbour one."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from da.errors import DAError


class LinearHead(nn.Linear):
    """A linear classifier, as in the digits literature's LeNet (500 -> classes), with optional
    dropout on the features it reads, in training only (``model.head_dropout``; SAFN, Xu et al.
    ICCV 2019, puts dropout before the classifier). Its weights are a plain ``nn.Linear``'s."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__(in_features, num_classes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, z: Tensor) -> Tensor:
        return super().forward(self.dropout(z))


def linear_head(in_features: int, num_classes: int, dropout: float = 0.0) -> nn.Linear:
    """The task head: a ``LinearHead`` (a plain ``nn.Linear`` without dropout)."""
    return LinearHead(in_features, num_classes, dropout) if dropout > 0 else nn.Linear(in_features, num_classes)


def weight_norm_head(in_features: int, num_classes: int) -> nn.Linear:
    """A weight-normalised linear classifier, w = g v / ||v|| per class (Salimans & Kingma 2016), as the
    classifier of SHOT's digit code (``feat_classifier(type="wn")``, Liang et al. 2020): PyTorch's
    default initialisation of v, g = ||v|| (SHOT's ``init_weights`` changes only the bias, to 0)."""
    linear = nn.Linear(in_features, num_classes)
    nn.init.zeros_(linear.bias)
    return nn.utils.parametrizations.weight_norm(linear, name="weight")


def zero_shot_head(extractor: nn.Module, class_names: list[str], num_classes: int) -> nn.Linear:
    """A linear head starting as CLIP's zero-shot classifier (Radford et al. 2021): its rows the
    extractor's ``zero_shot_weights`` (normalised prompt embeddings times the logit scale), bias 0.

    On the extractor's normalised image embeddings it gives CLIP's logits exactly; training moves it on."""
    if len(class_names) != num_classes:
        raise DAError(f"config key model.class_names lists {len(class_names)} names and the head has {num_classes} "
                      f"classes; give one name per class, in label order")
    weights = extractor.zero_shot_weights([str(n) for n in class_names])
    head = nn.Linear(weights.shape[1], num_classes)
    with torch.no_grad():
        head.weight.copy_(weights)
        head.bias.zero_()
    return head


class NearestNeighbourHead(nn.Module):
    """A 1-nearest-neighbour classifier over a bank of labelled features, by cosine similarity.

    The classifier of subspace alignment (Fernando et al., ICCV 2013, who label each target
    sample with its nearest aligned source sample). Logits are, per class, the highest cosine
    similarity to a bank feature of that class, divided by ``temperature``: their argmax is the
    1-NN label, and their softmax is a usable confidence for the unsupervised validators. It has
    no parameters: nothing trains it after it is built.
    """

    def __init__(self, num_classes: int, bank: Tensor | None = None, labels: Tensor | None = None,
                 temperature: float = 0.05) -> None:
        super().__init__()
        self.out_features = num_classes
        self.temperature = temperature
        bank = torch.zeros(0, 1) if bank is None else F.normalize(bank.float(), dim=1)
        self.register_buffer("bank", bank)
        self.register_buffer("labels", torch.zeros(0, dtype=torch.long) if labels is None else labels.long())

    def forward(self, z: Tensor) -> Tensor:
        if not len(self.bank):
            raise RuntimeError("NearestNeighbourHead has an empty bank: build it with features and labels, or load a checkpoint")
        sim = F.normalize(z, dim=1) @ self.bank.T
        best = sim.new_full((len(z), self.out_features), -1.0)  # -1: the lowest cosine, for a class the bank lacks
        best = best.scatter_reduce(1, self.labels.expand(len(z), -1), sim, reduce="amax")
        return best / self.temperature

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # The bank's size is the checkpoint's: take its shape before the values are copied in.
        for name in ("bank", "labels"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

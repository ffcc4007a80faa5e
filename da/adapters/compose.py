"""Several gradient-based adapters at once: their losses add up, each with its own weight.

Combining alignment terms is common practice, e.g. CDAN+E with an entropy-minimisation term
(Long et al. 2018, arXiv:1705.10667) or DAN's MMD on several layers (Long et al. 2015). A config
asks for it with a list: ``adapter: [{name: cdan}, {name: mmd, weight: 0.1}]``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from da.adapters.base import Adapter
from da.errors import DAError


def part_keys(names: Sequence[str]) -> list[str]:
    """Unique keys for parts: the name, then name-2, name-3 for repeats (``dann, dann`` -> ``dann, dann-2``)."""
    seen: dict[str, int] = {}
    keys = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return keys


class Composite(Adapter):
    """The weighted sum of its parts' alignment losses; each part's scalars logged under its key.

    ``parts`` are (name, adapter, weight); the config passes weight 1 to parts that take a
    ``weight`` argument of their own, so no weight applies twice. ``<key>/loss`` is the part's
    loss as that adapter alone would report it, before the composite weight; the total the loop
    logs as ``loss/adapter`` is the weighted sum. A method trained by a stage of its own (adda,
    mcd, subspace) has no loss and cannot be a part (the config refuses it).
    """

    description = "weighted sum of several adapters' losses (an adapter list in the config)"

    def __init__(self, parts: Sequence[tuple[str, Adapter, float]]) -> None:
        super().__init__()
        if not parts:
            raise DAError("a composite adapter needs at least one part")
        keys = part_keys([name for name, _, _ in parts])
        self.parts = nn.ModuleDict({key: adapter for key, (_, adapter, _) in zip(keys, parts)})
        self.weights = {key: float(weight) for key, (_, _, weight) in zip(keys, parts)}
        self.aligns_by_gradient = any(a.aligns_by_gradient for _, a, _ in parts)
        both = ("source", "target")  # the base class's default for gradient_domains
        reached = {d for _, a, _ in parts if a.aligns_by_gradient for d in a.gradient_domains}
        self.gradient_domains = tuple(d for d in both if d in reached)
        adapters = [a for _, a, _ in parts]
        self.settings = tuple(dict.fromkeys(s for a in adapters for s in a.settings))
        self.head_extra = max(a.head_extra for a in adapters)
        self.reversed_target_logits = any(a.reversed_target_logits for a in adapters)

    def unknown(self, z: Tensor, logits: Tensor) -> Tensor | None:
        masks = [m for m in (part.unknown(z, logits) for part in self.parts.values()) if m is not None]
        return torch.stack(masks).any(0) if masks else None

    def class_weight(self) -> Tensor | None:
        return next((w for w in (part.class_weight() for part in self.parts.values()) if w is not None), None)

    def loss(self, f_s, f_t, *, logits_s, logits_t, y_s, progress):
        total = f_s.new_zeros(())
        scalars: dict[str, Tensor] = {}
        for key, part in self.parts.items():
            value, part_scalars = part.loss(f_s, f_t, logits_s=logits_s, logits_t=logits_t, y_s=y_s, progress=progress)
            total = total + self.weights[key] * value
            scalars[f"{key}/loss"] = value.detach()
            scalars.update({f"{key}/{name}": v for name, v in part_scalars.items()})
        return total, scalars

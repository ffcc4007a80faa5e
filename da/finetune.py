"""Fine-tuning strategies: which parts of the model the adaptation stage trains, when, and how fast.

- Frozen vs fine-tuned extractor (Yosinski et al. 2014, "How transferable are features in deep
  neural networks?", NeurIPS): ``train.extractor: freeze`` keeps the pretrained extractor fixed
  and trains the head on its features; ``finetune`` trains it too. A block given a multiplier of
  0 in ``train.lr_mults`` is frozen alone (their transfer with the first n layers frozen).
- Discriminative learning rates (Howard & Ruder 2018, "Universal language model fine-tuning for
  text classification" (ULMFiT), ACL): ``train.lr_mults`` gives each block of the extractor its
  own multiplier of ``train.lr``, lower (more general) blocks usually smaller; ULMFiT divides by
  2.6 per layer going down.
- Layer-wise learning-rate decay (BEiT, Bao et al. 2022; the fine-tuning recipe of ViTs and their
  successors): ``train.layer_decay`` multiplies block i of n (bottom to top) by decay^(n-1-i), on
  top of ``lr_mults``; the blocks are ResNet stages, ViT / CLIP ``blocks.N``, ConvNeXt / Swin
  stages (timm's parameter groups, ``da.models.param_blocks``).
- Gradual unfreezing (ULMFiT): ``train.unfreeze`` starts with every extractor block frozen (the
  head and adapter train) and unfreezes one more block, top block first, after the listed
  adaptation steps (``steps``) or every ``every`` steps.

Without ``lr_mults`` and ``unfreeze`` the whole extractor is one group, ``extractor``. A frozen
group has ``requires_grad`` off, is in no optimizer parameter group (no weight decay or momentum
moves it: it stays bit-identical) and is kept in eval mode, so it is a fixed feature map: dropout
off and batch-norm running statistics not updated. The optimizer's parameter groups are in the
order ``trainable(done)`` gives, and unfreezing appends to them, so a run resumed after ``done``
steps rebuilds exactly the optimizer it checkpointed.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from da.config import TrainConfig, UnfreezeConfig


@dataclass
class Group:
    """A named part of the model with its learning-rate multiplier and when it starts training."""

    name: str
    module: nn.Module
    lr_mult: float
    #: Adaptation steps done before the group trains (0: from the start); None: frozen throughout.
    starts_after: int | None
    in_extractor: bool = True

    def trains_after(self, done: int) -> bool:
        return self.starts_after is not None and self.starts_after <= done


def unfreeze_schedule(unfreeze: UnfreezeConfig | None, num_blocks: int) -> list[int | None]:
    """Per block, bottom to top: the adaptation steps after which it unfreezes (None: never).

    Without a schedule every block trains from the start. ``every: n`` unfreezes the top block
    after n steps, the next after 2n, ...; ``steps: [a, b]`` the top block after a, the next after
    b, and leaves the blocks below frozen.
    """
    if unfreeze is None:
        return [0] * num_blocks
    from_top = ([(i + 1) * unfreeze.every for i in range(num_blocks)] if unfreeze.every is not None
                else [*unfreeze.steps, *[None] * (num_blocks - len(unfreeze.steps))])
    return from_top[::-1]


def layer_decay_mults(num_blocks: int, decay: float | None) -> list[float]:
    """Per block, bottom to top: ``decay ** (num_blocks - 1 - i)`` (1 for the top block; all 1 without decay).

    BEiT's layer-wise decay (Bao et al. 2022) as timm's ``param_groups_layer_decay`` applies it
    over a model's groups: the top group, which holds the last block and the final norm, keeps
    the full rate, and each group below trains ``decay`` times slower.
    """
    return [1.0 if decay is None else decay ** (num_blocks - 1 - i) for i in range(num_blocks)]


class FineTuning:
    """The adaptation stage's parameter groups over time (see the module docstring)."""

    def __init__(self, groups: list[Group]) -> None:
        self.groups = groups
        self._rank = {g.name: i for i, g in enumerate(groups)}

    @classmethod
    def for_adaptation(cls, extractor: nn.Module, head: nn.Module, adapter: nn.Module, train: TrainConfig) -> "FineTuning":
        finetune = train.extractor == "finetune"
        if train.lr_mults or train.unfreeze is not None or train.layer_decay is not None:
            blocks = extractor.blocks()
            starts = unfreeze_schedule(train.unfreeze, len(blocks))
            decay = layer_decay_mults(len(blocks), train.layer_decay)
            parts = [(name, module, train.extractor_lr_mult * train.lr_mults.get(name, 1.0) * scale, start)
                     for (name, module), start, scale in zip(blocks, starts, decay)]
        else:
            parts = [("extractor", extractor, train.extractor_lr_mult, 0 if finetune else None)]
        groups = [Group(name, module, mult, start if finetune and mult > 0 else None)
                  for name, module, mult, start in parts]
        groups.append(Group("head", head, 1.0, 0, in_extractor=False))
        groups.append(Group("adapter", adapter, train.adapter_lr_mult, 0 if train.adapter_lr_mult > 0 else None,
                            in_extractor=False))
        return cls(groups)

    def trainable(self, done: int) -> list[Group]:
        """Groups training after ``done`` steps, in optimizer order: the groups trained from the
        start in model order (extractor bottom to top, head, adapter), then the unfrozen blocks in
        the order they unfroze (top first on a tie)."""
        def order(g: Group) -> tuple[int, int]:
            rank = self._rank[g.name]
            return (g.starts_after, rank if g.starts_after == 0 else -rank)

        return sorted((g for g in self.groups if g.trains_after(done)), key=order)

    def unfreezing_at(self, done: int) -> list[Group]:
        """Groups that start training once ``done`` (> 0) steps are done, in optimizer order."""
        return [g for g in self.trainable(done) if g.starts_after == done and done > 0]

    def extractor_groups(self) -> list[Group]:
        return [g for g in self.groups if g.in_extractor]

    def extractor_trains(self, done: int) -> bool:
        return any(g.trains_after(done) for g in self.extractor_groups())

    def set_modes(self, done: int) -> None:
        """Frozen extractor groups: no gradients and eval mode; trainable ones: gradients and train mode."""
        for g in self.extractor_groups():
            trains = g.trains_after(done)
            g.module.requires_grad_(trains)
            g.module.train(trains)

    def trainable_flags(self, done: int) -> dict[str, float]:
        """``trainable/<group>``: 1.0 or 0.0 per extractor group, for TensorBoard."""
        return {f"trainable/{g.name}": float(g.trains_after(done)) for g in self.extractor_groups()}

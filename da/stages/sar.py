"""``sar``: sharpness-aware and reliable entropy minimisation (Niu et al., "Towards Stable Test-Time
Adaptation in Dynamic Wild World", ICLR 2023; github.com/mr-eggplant/SAR, ``sar.py`` and ``main.py``).

TENT's entropy minimisation on the normalisation layers' affine parameters, made stable for small
batches, mixed shifts and imbalanced label streams. For each test batch, with the logits predicted
before any update:

- reliable samples: entropy below E_0 = ``margin`` * ln C (Eqn. 2; 0.4 ln C);
- a SAM step (Foret et al. 2021; ``da.train.sam``) of radius ``rho`` on their mean entropy (Eqns.
  3-4): the weights move to w + e(w), the batch goes through again, its samples filtered again
  (by the same indices, then by E_0 at the new weights), and the gradient there steps the weights
  from w;
- model recovery: an exponential moving average (0.9) of that second entropy; when it falls below
  ``reset_constant`` (0.2) the model and optimizer go back to the source's (a collapse to a
  trivial solution has confident, low-entropy predictions).

Kept as the repo does: a batch without a reliable sample (or without one left after the second
filter) back-propagates an empty mean, a zero gradient, so SGD still takes its momentum step; the
moving average moves only with a finite second entropy; after a recovery the moving average keeps
its value (the repo's ``forward`` sets ``self.ema`` after ``reset()`` cleared it), so the test
repeats on the next batch until the average climbs back over the constant. Not kept: the repo's
recovery leaves SGD's momentum in place (it reloads its SAM's ``state_dict``, which holds none of
the base optimizer's state); here the optimizer goes back to the source's too, as the paper says.

The paper gives no CIFAR-10 setting (its experiments are ImageNet-C), so the defaults are the
repo's for ResNet-50 (BN or GN): SGD, momentum 0.9, rho 0.05, lr 0.00025 for a batch of 32 or more,
else 0.00025 / 64 * batch * 2, doubled again at batch size 1 (``lr: null`` applies that rule; a
number overrides it). The repo adapts every norm layer but the top ones (ResNet's layer4, ViT's last
three blocks); the digit LeNets have three norm layers and all three are adapted.

``reset_constant`` is an entropy in nats fixed for ImageNet's 1,000 classes (ln 1000 = 6.9). On a
confident 10-class digit model the mean entropy of reliable samples is already below 0.2, so the
recovery fires at every batch and SAR stays the source model (docs/methods.md's figures); E_0
scales with ln C, this constant does not: ``reset_constant: 0.0667`` (0.2 ln 10 / ln 1000) is the
scaled value, 0 turns the recovery off.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Literal

import torch
from torch import Tensor

from da.errors import DAError
from da.registry import register_stage
from da.stages.base import OptimSettings, ParamGroup, Update
from da.stages.entropy import entropy_margin, softmax_entropy
from da.stages.test_time import GradientTestTimeStage
from da.train.run import Run, StageContext

#: Momentum of the moving average of the entropy (the repo's ``update_ema``).
EMA_MOMENTUM = 0.9


def repo_lr(batch_size: int) -> float:
    """SAR's main.py learning rate for ResNet-50 (BN or GN) at ``batch_size``, SAR's doubling at 1 included."""
    lr = 0.00025 if batch_size >= 32 else 0.00025 / 64 * batch_size * 2
    return 2 * lr if batch_size == 1 else lr


@register_stage("sar")
@dataclass(eq=False)
class Sar(GradientTestTimeStage):
    """Reliable entropy minimisation with a SAM step and recovery to the source model (Niu et al. 2023)."""

    lr: float | None = None  # None: the repo's rule for the batch size (repo_lr)
    optimizer: Literal["sgd", "adam"] = "sgd"
    margin: float = 0.4         # E_0 as a fraction of ln C
    rho: float = 0.05
    reset_constant: float = 0.2

    description: ClassVar[str] = ("SAR: reliable entropy minimisation with a sharpness-aware (SAM) step and recovery "
                                  "to the source model (Niu et al. 2023)")
    keeps_source: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.margin <= 0 or self.rho < 0 or (self.lr is not None and self.lr < 0):
            raise DAError(f"stage sar: margin must be > 0, rho >= 0 and lr >= 0 (or null for the repo's rule); got "
                          f"margin={self.margin}, rho={self.rho}, lr={self.lr}")
        self.ema: float | None = None  # moving average of the second entropy
        self.recoveries = 0
        self.last: dict[str, Any] = {}

    def learning_rate(self) -> float:
        return repo_lr(self.batch_size) if self.lr is None else self.lr

    def settings(self, run: "Run") -> OptimSettings:
        return OptimSettings(self.learning_rate(), self.momentum, self.weight_decay, False, "constant", self.optimizer,
                             sam_rho=self.rho)

    def optimizers(self, run: "Run", done: int) -> dict[str, list[ParamGroup]]:
        return {"main": self.norm_affine(run)}

    def adapt(self, ctx: "StageContext", x: Tensor) -> Iterator[Update]:
        logits = self.forward(ctx.run, x)
        entropy = softmax_entropy(logits)
        margin = entropy_margin(logits.shape[1], self.margin)
        reliable = torch.where(entropy < margin)[0]
        self.last = {"sar/entropy": entropy.detach().mean(), "sar/reliable": len(reliable) / len(x)}
        if len(reliable) == 0:  # the repo's empty mean: zero gradients, a momentum step
            yield Update(entropy.sum() * 0.0)
        else:
            yield Update(entropy[reliable].mean(0), perturb=True)
            second = softmax_entropy(self.forward(ctx.run, x))[reliable]
            kept = second[torch.where(second < margin)[0]]
            if len(kept) > 0:
                value = kept.detach().mean(0).item()
                self.ema = value if self.ema is None else EMA_MOMENTUM * self.ema + (1 - EMA_MOMENTUM) * value
            yield Update(kept.mean(0) if len(kept) > 0 else second.sum() * 0.0)
        self.recover(ctx)
        return logits

    def recover(self, ctx: "StageContext") -> None:
        """Back to the source model and optimizer when the moving average fell below ``reset_constant``."""
        self.last["sar/ema"] = self.ema if self.ema is not None else float("nan")
        if self.ema is not None and self.ema < self.reset_constant:
            ema = self.ema
            self.restore(ctx)
            self.ema = ema  # as the repo: the average outlives the reset
            self.recoveries += 1
        self.last["sar/recoveries"] = self.recoveries

    def scalars(self) -> dict[str, Any]:
        return dict(self.last)

    def method_state(self) -> dict[str, Any]:
        return {"ema": self.ema}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.ema = state["ema"]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "recoveries": self.recoveries}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.recoveries = state["recoveries"]

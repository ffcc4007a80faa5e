"""``tent``: test entropy minimisation (Wang et al., "Tent: Fully test-time adaptation by entropy
minimization", ICLR 2021; github.com/DequanWang/tent).

For each test batch: predict with the batch's own normalisation statistics, then take a step that
lowers the mean entropy of those predictions, on the affine parameters (scale and shift) of the
normalisation layers alone; every other weight stays the source model's. The prediction scored is
the one made before the step. Defaults are the paper's for CIFAR-10-C: Adam, lr 1e-3, betas
(0.9, 0.999), no weight decay, one step per batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

from torch import Tensor

from da.errors import DAError
from da.registry import register_stage
from da.stages.base import ParamGroup, Update
from da.stages.entropy import softmax_entropy
from da.stages.test_time import GradientTestTimeStage
from da.train.run import Run, StageContext


@register_stage("tent")
@dataclass(eq=False)
class Tent(GradientTestTimeStage):
    """Entropy minimisation on the normalisation layers' affine parameters, test-batch statistics (Wang et al. 2021)."""

    lr: float = 1e-3
    steps_per_batch: int = 1

    description: ClassVar[str] = ("TENT: entropy minimisation on the normalisation layers' affine parameters with "
                                  "test-batch statistics (Wang et al. 2021)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps_per_batch < 1:
            raise DAError(f"stage tent: steps_per_batch must be >= 1, got {self.steps_per_batch}")
        self.entropy = 0.0

    def optimizers(self, run: "Run", done: int) -> dict[str, list[ParamGroup]]:
        return {"main": self.norm_affine(run)}

    def adapt(self, ctx: "StageContext", x: Tensor) -> Iterator[Update]:
        for _ in range(self.steps_per_batch):  # the logits returned are the last forward's, as TENT's
            logits = self.forward(ctx.run, x)
            loss = softmax_entropy(logits).mean()
            self.entropy = loss.detach()
            yield Update(loss)
        return logits

    def scalars(self) -> dict[str, Any]:
        return {"tent/entropy": self.entropy}

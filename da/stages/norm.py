"""``norm``: test-time batch normalisation with a source prior (Schneider et al., "Improving
robustness against common corruptions by covariate shift adaptation", NeurIPS 2020).

Nothing is trained: each batch-norm layer normalises the test batch with its own statistics mixed
with the source's, the source counting as ``prior`` images (the paper's N; 0: the batch's alone,
the "test-time BN" of Nado et al. 2020). A prior makes a batch of one image meaningful.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from da.errors import DAError
from da.models.backbone_entry import backbone_entry
from da.registry import register_stage
from da.stages.test_time import TestTimeStage
from da.train.run import StageContext


@register_stage("norm")
@dataclass(eq=False)
class Norm(TestTimeStage):
    """Test-batch normalisation statistics, mixed with the source's by a prior (Schneider et al. 2020)."""

    prior: float = 0.0

    description: ClassVar[str] = ("test-time batch norm: the test batch's statistics with a source prior of N "
                                  "images (Schneider et al. 2020); trains nothing")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prior < 0:
            raise DAError(f"stage norm: prior is a number of images and must be >= 0, got {self.prior}")

    def statistics_prior(self) -> float:
        return self.prior

    def check(self, config: Any) -> None:
        super().check(config)
        if not backbone_entry(config.model).batch_norm and not config.model.bottleneck:
            raise DAError(f"stage norm re-estimates batch-norm statistics and backbone {config.model.backbone} has no "
                          f"batch norm; use model.backbone: lenet_bn (or another with batch norm), or another stage")

    @torch.no_grad()
    def adapt(self, ctx: "StageContext", x: Tensor) -> Tensor:
        return self.forward(ctx.run, x)

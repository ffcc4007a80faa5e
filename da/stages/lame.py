"""``lame``: Laplacian adjusted maximum-likelihood estimation (Boudiaf et al., "Parameter-free Online
Test-time Adaptation", CVPR 2022; github.com/fiveai/LAME).

Nothing trains and no parameter changes: the source model (its own normalisation, batch norm with
the source's running statistics) gives each test batch its class probabilities and features (the
head's input, L2-normalised), and LAME corrects the probabilities so that points close in feature
space agree (``da.stages.laplacian``). The correction helps most where a batch holds few classes
(a class-correlated stream, ``order: class_correlated``), where methods that train on the batch
suffer. The scored logits are log Y.

Defaults are the paper's: a kNN affinity with ``knn`` 5 neighbours, symmetrised (``force_symmetry``),
at most 100 iterations (``max_steps``), lambda 1. The reference repository's code defaults differ:
an ``rbf`` kernel without symmetrisation (``kernel: rbf, force_symmetry: false``); its tuned
configs (``configs/method/best/LAME``) set knn 5. They are not tied to one dataset; digits take them.

A batch of one image has no neighbour: the affinity is zero and LAME returns the source model's
prediction (so it does with ``batch_size`` 1, uselessly).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from da.errors import DAError
from da.registry import register_stage
from da.stages.laplacian import KERNELS, affinity, laplacian_optimization
from da.stages.test_time import TestTimeStage
from da.train.run import StageContext


@register_stage("lame")
@dataclass(eq=False)
class Lame(TestTimeStage):
    """Laplacian-regularised correction of the source model's batch predictions over a kNN graph (Boudiaf et al. 2022)."""

    knn: int = 5
    kernel: Literal["knn", "rbf", "linear"] = "knn"
    force_symmetry: bool = True
    max_steps: int = 100

    description: ClassVar[str] = ("LAME: Laplacian correction of the source model's batch predictions over a kNN "
                                  "graph; trains nothing (Boudiaf et al. 2022)")
    test_statistics: ClassVar[bool] = False  # the source model's normalisation, as in the paper

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kernel not in KERNELS:
            raise DAError(f"stage lame: kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        if self.knn < 1 or self.max_steps < 1:
            raise DAError(f"stage lame: knn and max_steps must be >= 1, got knn={self.knn}, max_steps={self.max_steps}")
        self.last: dict[str, Any] = {}

    def correct(self, logits: Tensor, features: Tensor) -> Tensor:
        """LAME's assignments Y for a batch's source ``logits`` and ``features``."""
        probs = logits.softmax(1)
        kernel = affinity(F.normalize(features.flatten(1), p=2, dim=-1), self.kernel, self.knn)
        if self.force_symmetry:
            kernel = 0.5 * (kernel + kernel.t())
        y, iterations = laplacian_optimization(-torch.log(probs + 1e-10), kernel, 1.0, self.max_steps)
        self.last = {"lame/iterations": iterations,
                     "lame/changed": (y.argmax(1) != logits.argmax(1)).float().mean()}
        return y

    @torch.no_grad()
    def adapt(self, ctx: "StageContext", x: Tensor) -> Tensor:
        model = ctx.run.model
        features = model.embed(x, "target")
        return self.correct(model.head(features), features).clip(1e-20).log()

    def scalars(self) -> dict[str, Any]:
        return dict(self.last)

"""What one evaluation hands the validators: outputs on the labelled source validation split and on
the target probe (target train images, labels hidden), and, for the validators that need it, a way
to predict new images (MixVal's mixed probes)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

#: Source validation rows whose features the feature-based validators read: as many as the target
#: probe (da.domains.PROBE_SIZE), so that neither domain outweighs the other and MMD / k-NN stay cheap.
SOURCE_FEATURES = 2000
#: What a validator may need beyond the target probe's logits and features, which every evaluation has.
NEEDS = ("source_features", "target_images")


@dataclass
class ScoringInputs:
    """Tensors of one evaluation, on the CPU, detached.

    ``source_*`` are of the held-out source validation split (labelled; ``source_features`` of its
    first :data:`SOURCE_FEATURES` rows), ``target_*`` of the target probe (a seeded sample of the target train split, whose labels are hidden). ``source_features``
    is gathered only when a chosen validator declares it needs it, as are ``target_images`` (a
    function from probe indices to images, as the model sees them at evaluation) and ``predict``
    (images to target logits, in eval mode).
    """

    source_logits: Tensor
    source_labels: Tensor
    target_logits: Tensor
    target_features: Tensor
    source_features: Optional[Tensor] = None
    target_images: Optional[Callable[[Tensor], Tensor]] = None
    predict: Optional[Callable[[Tensor], Tensor]] = None

    def split(self, name: str, with_features: bool = True) -> dict[str, Tensor]:
        """pytorch-adapt's dictionary for a split (``src_val`` or ``target_train``): features,
        logits, softmax predictions, domain (0 source, 1 target) and, on the source, labels."""
        if name == "src_val":
            # The source features may cover only the first rows of the split (SOURCE_FEATURES).
            rows = len(self.source_features) if with_features else len(self.source_logits)
            logits, features, extra = self.source_logits[:rows], self.source_features, {"labels": self.source_labels[:rows]}
            domain = 0
        else:
            logits, features, extra = self.target_logits, self.target_features, {}
            domain = 1
        out = {"logits": logits, "preds": torch.softmax(logits, dim=1),
               "domain": torch.full((len(logits),), domain, dtype=torch.long), **extra}
        if with_features:
            out["features"] = features
        return out

"""``optdigits``: the UCI handwritten digits scikit-learn ships, upsampled to MNIST's layout.

scikit-learn's ``load_digits`` is the test part of UCI's "Optical Recognition of Handwritten
Digits" (Alpaydin & Kaynak, 1998): 1,797 images of 8 x 8 cells, each the count (0-16) of set
pixels in a 4 x 4 block of a 32 x 32 bitmap, from 43 writers. Each image is resized to 20 x 20
(bilinear) and centred in a 28 x 28 frame with a 4-pixel margin, as MNIST centres its digits in
a 20 x 20 box, and scaled to [-1, 1] (0 -> -1, 16 -> 1). The split is seeded and stratified:
30% of each class for test (``split(seed)`` gives the indices into ``load_digits()``; with
``SEED`` 0: 1,258 train and 539 test). The cache under the data root records the indices.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from da.data.cache import cached
from da.data.dataset_entry import register_dataset
from da.data.domain import DomainData, Split

SIZE, BOX = 28, 20
TEST_FRACTION = 0.3
SEED = 0
VERSION = 1


def split(labels: Tensor, seed: int = SEED) -> tuple[Tensor, Tensor]:
    """Sorted train and test indices: a seeded ``TEST_FRACTION`` of each class (rounded) for test."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=g)
    test = []
    for c in labels.unique().tolist():
        members = order[labels[order] == c]
        test.append(members[: round(TEST_FRACTION * len(members))])
    test_index = torch.cat(test).sort().values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[test_index] = False
    return keep.nonzero().squeeze(1), test_index


def upsample(cells: Tensor) -> Tensor:
    """(n, 8, 8) counts 0-16 -> (n, 28, 28) uint8: resized to 20 x 20 and centred."""
    x = F.interpolate(cells.float().unsqueeze(1) / 16, size=(BOX, BOX), mode="bilinear", align_corners=False)
    pad = (SIZE - BOX) // 2
    x = F.pad(x, (pad, pad, pad, pad))[:, 0]
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def build(seed: int = SEED) -> dict[str, Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    cells = torch.from_numpy(digits.images).view(-1, 8, 8)
    y = torch.from_numpy(digits.target).long()
    train, test = split(y, seed)
    x = upsample(cells)
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test],
            "train_index": train, "test_index": test}


def load(root: Path, seed: int = SEED) -> DomainData:
    recipe = {"generator": "optdigits", "version": VERSION, "seed": seed, "test_fraction": TEST_FRACTION}
    t = cached(Path(root), f"optdigits-seed{seed}", recipe, lambda: build(seed))
    unit = lambda x: x.float().div(127.5).sub(1).unsqueeze(1)
    return DomainData("optdigits", Split(unit(t["x_train"]), t["y_train"]), Split(unit(t["x_test"]), t["y_test"]),
                      num_classes=10)


@register_dataset("optdigits", num_classes=10, generated=True)
def optdigits(root: Path, download: bool, role: str) -> DomainData:
    """UCI handwritten digits (scikit-learn), 8 x 8 upsampled to 28 x 28 grey: 1,258 train, 539 test."""
    return load(root)


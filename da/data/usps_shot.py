"""``usps_shot``: SHOT's division of the USPS digits, rebuilt: 7,438 train and 1,860 test images.

SHOT's digit code (Liang et al., ICML 2020; github.com/tim-learn/SHOT, ``digit/data_load/usps.py``)
reads ``usps_28x28.pkl`` from the CoGAN repository (Liu & Tuzel 2016; also used by ADDA's code): all
9,298 USPS digits at 28 x 28, divided into 7,438 train and 1,860 test images. That file is not on
these machines, so this is a REBUILD, not SHOT's file: the official 7,291 train and 2,007 test
images (torchvision's USPS, resized 16 -> 28 bilinear, as ``usps``), pooled and divided by a seeded
permutation (``seed``, default 0) into the same sizes. The images are not the pickle's pixels
(its 28 x 28 resize is CoGAN's) and the division is not its division, so a figure measured here
is comparable to SHOT's published ones in protocol, not image for image. Every run with the same
``seed`` sees the same division, whatever its own seed.
"""
from __future__ import annotations

from pathlib import Path

import torch

from da.data.dataset_entry import register_dataset
from da.data.digits import usps
from da.data.domain import DomainData, Split
from da.errors import DAError

#: SHOT's (CoGAN's) division of the 9,298 USPS images.
TRAIN, TEST = 7438, 1860


@register_dataset("usps_shot", num_classes=10)
def usps_shot(root: Path, download: bool, role: str, *, seed: int = 0) -> DomainData:
    """USPS, all 9,298 digits divided as SHOT's digit code does (7,438 / 1,860), rebuilt by a seeded permutation."""
    official = usps(root, download, role)
    x, y = torch.cat([official.train.x, official.test.x]), torch.cat([official.train.y, official.test.y])
    if len(x) != TRAIN + TEST:
        raise DAError(f"USPS under {root} holds {len(x)} images, not the {TRAIN + TEST} of the official train and test "
                      f"files; delete usps.bz2 and usps.t.bz2 and download them again")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    keep, held = order[:TRAIN], order[TRAIN:]
    return DomainData("usps_shot", Split(x[keep], y[keep]), Split(x[held], y[held]), num_classes=10)

"""MNIST and USPS through torchvision, each split loaded once into tensors.

USPS's 16x16 images are resized once to 28x28 (bilinear), as in Transfer-Learning-Library's
digits benchmark, so both domains share LeNet's 28x28 input. ``mnist_parity`` is MNIST with
another label set (even / odd), a new task for a digits-pretrained extractor.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from da.data.domain import DomainData, Split, to_unit_range
from da.errors import DAError
from da.registry import register_dataset

SIZE = 28


def _load(cls: type, name: str, root: Path, download: bool, expected: str, **split_kw):
    try:
        return cls(str(root), download=download, **split_kw)
    except Exception as exc:  # torchvision raises RuntimeError when missing, URLError/OSError offline
        how = "download was off (data.download: false)" if not download else f"the download failed ({_first_line(exc)})"
        raise DAError(
            f"{name} is not under {root} ({expected}) and {how}; point DA_DATA_ROOT or data.root "
            f"at a folder that holds it, or run once with network access to download it"
        ) from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


@register_dataset("mnist")
def mnist(root: Path, download: bool, role: str) -> DomainData:
    """MNIST: 60,000 train and 10,000 test handwritten digits, 28x28."""
    from torchvision.datasets import MNIST

    splits = {}
    for train in (True, False):
        ds = _load(MNIST, "MNIST", root, download, "expected MNIST/raw/*-ubyte", train=train)
        splits[train] = Split(to_unit_range(ds.data), ds.targets.long())
    return DomainData("mnist", splits[True], splits[False], num_classes=10)


@register_dataset("usps")
def usps(root: Path, download: bool, role: str) -> DomainData:
    """USPS: 7,291 train and 2,007 test digits, 16x16, resized to 28x28 (bilinear)."""
    train, test = _usps_splits(Path(root), download)
    return DomainData("usps", train, test, num_classes=10)


@functools.lru_cache(maxsize=2)
def _usps_splits(root: Path, download: bool) -> tuple[Split, Split]:
    """USPS's train and test splits, decoded once per process: parsing its bz2 text files takes seconds
    (MNIST's binary files load in a fraction of that), and a script that trains many runs in one
    process (experiments/) would pay it for each. The tensors are shared: nothing writes to them."""
    from torchvision.datasets import USPS

    splits = {}
    for train in (True, False):
        ds = _load(USPS, "USPS", root, download, "expected usps.bz2 and usps.t.bz2", train=train)
        x = to_unit_range(torch.from_numpy(np.asarray(ds.data)))
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        splits[train] = Split(x.clamp_(-1, 1), torch.as_tensor(ds.targets, dtype=torch.long))
    return splits[True], splits[False]


@register_dataset("mnist_parity")
def mnist_parity(root: Path, download: bool, role: str) -> DomainData:
    """MNIST relabelled by parity: 0 even, 1 odd (a new two-class task on the same images)."""
    d = mnist(root, download, role)
    return DomainData("mnist_parity", Split(d.train.x, d.train.y % 2), Split(d.test.x, d.test.y % 2), num_classes=2)

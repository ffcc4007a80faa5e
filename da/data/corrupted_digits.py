"""``mnist_c`` and ``usps_c``: MNIST and USPS under the 15 corruptions of Hendrycks & Dietterich (ICLR 2019).

A config picks one corruption and one severity (1-5, default 5, the level test-time adaptation is
usually reported at, e.g. Tent, Wang et al. ICLR 2021)::

    data.target: {name: mnist_c, corruption: gaussian_noise, severity: 5}

Each (corruption, severity) is a domain of its own, named ``mnist_c/gaussian_noise/5``, generated
on first use (only the pair asked for) and cached (``da.data.cache``; the recipe names the
imagecorruptions version, the corruption, the severity and the seed). How an image is corrupted,
and at what resolution, is ``da.data.corruptions``. The images are grey 1 x 28 x 28, like
``mnist``'s; the labels are the clean data set's.

Splits: the test split is the clean test split corrupted whole (MNIST 10,000, USPS 2,007): the
stream a test-time method adapts on and is scored on. The train split, which offline methods adapt
on, is a seeded subset of ``TRAIN_SIZE`` MNIST train images (all 7,291 of USPS): at up to 5 ms an
image (motion blur at 84 px), MNIST's 60,000 would take minutes on two cores for each corruption and
severity; 10,000 train and 10,000 test take under a minute.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from da.data.cache import cached
from da.data.corruptions import SPATIAL_SIZE, Corruption, Severity, corrupt, package_version
from da.data.dataset_entry import register_dataset
from da.data.digits import mnist_uint8, usps
from da.data.domain import DomainData, Split, to_unit_range

#: Train images corrupted, a seeded subset when the clean train split is larger (MNIST's 60,000).
TRAIN_SIZE = 10_000
SEED = 0
VERSION = 1  # bump when the generation changes: caches from another version are rebuilt

CleanSplits = tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]


def train_subset(n: int, seed: int = SEED) -> Tensor:
    """The indices (sorted) of the train images corrupted: ``TRAIN_SIZE`` of ``n`` drawn with ``seed``, or all."""
    if n <= TRAIN_SIZE:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:TRAIN_SIZE].sort().values


def build(clean: CleanSplits, corruption: str, severity: int, seed: int = SEED) -> dict[str, Tensor]:
    """The corrupted train subset and test split, uint8 (n, 28, 28), and the subset's indices."""
    (x_train, _), (x_test, _) = clean
    index = train_subset(len(x_train), seed)
    return {"x_train": corrupt(x_train[index], corruption, severity, "train", seed, indices=index),
            "x_test": corrupt(x_test, corruption, severity, "test", seed), "train_index": index}


def load(base: str, clean: CleanSplits, root: Path, corruption: str, severity: int, seed: int = SEED) -> DomainData:
    """``base`` (mnist, usps) under ``corruption`` at ``severity``, from its cache under ``root`` (built on first use)."""
    (x_train, y_train), (x_test, y_test) = clean
    recipe = {"generator": f"{base}_c", "version": VERSION, "imagecorruptions": package_version(),
              "corruption": corruption, "severity": severity, "seed": seed, "spatial_size": SPATIAL_SIZE,
              "train": min(len(x_train), TRAIN_SIZE), "test": len(x_test)}
    t = cached(Path(root), f"{base}_c-{corruption}-{severity}-seed{seed}", recipe,
               lambda: build(clean, corruption, severity, seed))
    return DomainData(f"{base}_c/{corruption}/{severity}", Split(to_unit_range(t["x_train"]), y_train[t["train_index"]]),
                      Split(to_unit_range(t["x_test"]), y_test), num_classes=10)


def usps_uint8(root: Path, download: bool) -> CleanSplits:
    """USPS's train and test splits as the ``usps`` domain has them (28 x 28, bilinear), back in uint8."""
    d = usps(root, download, "target")
    as_uint8 = lambda x: ((x[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return (as_uint8(d.train.x), d.train.y), (as_uint8(d.test.x), d.test.y)


@register_dataset("mnist_c", num_classes=10, generated=True)
def mnist_c(root: Path, download: bool, role: str, *, corruption: Corruption, severity: Severity = 5) -> DomainData:
    """MNIST under one of Hendrycks & Dietterich's 15 corruptions, severity 1-5 (grey 28 x 28): 10,000 / 10,000."""
    clean = (mnist_uint8(root, download, True), mnist_uint8(root, download, False))
    return load("mnist", clean, root, corruption, severity)


@register_dataset("usps_c", num_classes=10, generated=True)
def usps_c(root: Path, download: bool, role: str, *, corruption: Corruption, severity: Severity = 5) -> DomainData:
    """USPS under one of Hendrycks & Dietterich's 15 corruptions, severity 1-5 (grey 28 x 28): 7,291 / 2,007."""
    return load("usps", usps_uint8(Path(root), download), root, corruption, severity)

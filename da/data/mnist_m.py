"""``mnist_m``: MNIST digits blended over colour photographs, rebuilt from other photographs.

Ganin & Lempitsky (ICML 2015) build MNIST-M by blending each MNIST digit with a random 28 x 28
patch of a BSDS500 colour photograph: ``out = |patch - digit|`` per channel, so the digit's
strokes invert the photograph's colours. BSDS500 cannot be downloaded here, so this rebuild takes
its patches from the colour photographs scikit-image ships in its wheel: astronaut, chelsea (a
cat), coffee, rocket, hubble_deep_field, immunohistochemistry and motorcycle_left (from
``stereo_motorcycle``), each resized so its shorter side is 320 px (BSDS500's photographs are
481 x 321). A patch is a random crop of a random photograph, flipped left-right with
probability 1/2. Seven photographs give less variety than BSDS500's 500: this domain is not the
paper's, and its figures are not comparable to the paper's, only the gaps between methods are.

Train and test are MNIST's (60,000 / 10,000, the same labels in the same order); patches are drawn
from one seed (``SEED`` for train, ``SEED + 1`` for test). ``generate(digits, seed)`` reruns the
blend; the registered dataset caches it under the data root (``da.data.cache``).
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from da.data.cache import cached
from da.data.dataset_entry import register_dataset
from da.data.digits import mnist_uint8
from da.data.domain import DomainData, Split, to_unit_range

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "motorcycle_left")
SHORT_SIDE = 320
SIZE = 28
SEED = 0
VERSION = 1  # bump when the generation changes: caches from another version are rebuilt


@functools.lru_cache(maxsize=1)
def photographs() -> tuple[Tensor, ...]:
    """The photographs as uint8 (3, H, W), shorter side ``SHORT_SIDE`` (antialiased resize)."""
    import skimage.data

    out = []
    for name in PHOTOS:
        image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(skimage.data, name)()
        x = torch.from_numpy(image[..., :3].copy()).permute(2, 0, 1).float().unsqueeze(0)
        h, w = x.shape[2:]
        size = (SHORT_SIDE, round(w * SHORT_SIDE / h)) if h <= w else (round(h * SHORT_SIDE / w), SHORT_SIDE)
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        out.append(x[0].round().clamp(0, 255).to(torch.uint8))
    return tuple(out)


def patches(n: int, g: torch.Generator) -> Tensor:
    """``n`` random 28 x 28 crops (n, 3, 28, 28) uint8 of random photographs, half of them mirrored."""
    photos = photographs()
    which = torch.randint(len(photos), (n,), generator=g)
    u = torch.rand(n, 2, generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    out = torch.empty(n, 3, SIZE, SIZE, dtype=torch.uint8)
    r = torch.arange(SIZE)
    for p, photo in enumerate(photos):
        idx = (which == p).nonzero().squeeze(1)
        if not len(idx):
            continue
        h, w = photo.shape[1:]
        top = (u[idx, 0] * (h - SIZE + 1)).long().view(-1, 1, 1)
        left = (u[idx, 1] * (w - SIZE + 1)).long().view(-1, 1, 1)
        cols = torch.where(flip[idx].view(-1, 1), SIZE - 1 - r, r).view(-1, 1, SIZE)
        crop = photo[:, top + r.view(1, SIZE, 1), left + cols]  # (3, k, 28, 28)
        out[idx] = crop.permute(1, 0, 2, 3)
    return out


def generate(digits: Tensor, seed: int) -> Tensor:
    """MNIST-M images (n, 3, 28, 28) uint8 from MNIST digits (n, 28, 28) uint8: |patch - digit|."""
    patch = patches(len(digits), torch.Generator().manual_seed(seed)).short()
    return (patch - digits.short().unsqueeze(1)).abs().to(torch.uint8)


def build(mnist_train: Tensor, mnist_test: Tensor, seed: int = SEED) -> dict[str, Tensor]:
    return {"x_train": generate(mnist_train, seed), "x_test": generate(mnist_test, seed + 1)}


def load(root: Path, download: bool, seed: int = SEED) -> DomainData:
    """The domain, from its cache under ``root`` (built from MNIST under ``root`` on first use)."""
    (x_train, y_train), (x_test, y_test) = (mnist_uint8(root, download, train) for train in (True, False))
    recipe = {"generator": "mnist_m", "version": VERSION, "seed": seed, "photos": list(PHOTOS), "short_side": SHORT_SIDE,
              "train": len(x_train), "test": len(x_test)}
    t = cached(Path(root), f"mnist_m-seed{seed}", recipe, lambda: build(x_train, x_test, seed))
    return DomainData("mnist_m", Split(to_unit_range(t["x_train"]), y_train),
                      Split(to_unit_range(t["x_test"]), y_test), num_classes=10)


@register_dataset("mnist_m", num_classes=10, generated=True)
def mnist_m(root: Path, download: bool, role: str) -> DomainData:
    """MNIST blended over crops of scikit-image's colour photographs (3 x 28 x 28): 60,000 / 10,000."""
    return load(root, download)


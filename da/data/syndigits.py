"""``syndigits``: digits rendered from fonts, a rebuild of Ganin & Lempitsky's "Syn Numbers".

Ganin & Lempitsky (ICML 2015, "Unsupervised domain adaptation by backpropagation") train on
rendered house-number-like digits: Windows fonts at varying position, orientation, stroke,
colour and background, then blurred. Those fonts and images are not available here, so this
module renders its own from the fonts matplotlib ships in its wheel (no system fonts):
DejaVu Sans, Sans Mono and Serif (regular, bold, oblique / italic, bold oblique / italic),
STIX General (the same four) and Computer Modern (cmr10, cmb10, cmss10, cmti10, cmtt10): 21
faces. Each image is 3 x 28 x 28 colour:

- the labelled digit at a random height (55-90% of the image), position (+-10%), rotation
  (+-15 degrees) and stroke (the glyph as drawn, or thickened by a 1 px outline at 32 px);
- with probability 1/2 each, a neighbouring digit of the same face on its left and on its right,
  cut by the border, as in a cropped house number;
- a random colour over a random colour background with a linear shading gradient (the two
  colours at least 0.3 apart in luma), a Gaussian blur (sigma 0-1.2 px) and Gaussian noise
  (std 0-0.08 of the range).

Classes are exactly balanced; train 50,000 and test 10,000 images, from one seed.
``generate(n, seed)`` reruns the generation; the registered dataset caches it under the data root
(``da.data.cache``).
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from da.data.cache import cached
from da.data.dataset_entry import register_dataset
from da.data.domain import DomainData, Split, to_unit_range

FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
         "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
         "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
         "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
         "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf")
STROKES = (0, 1)  # outline width in pixels at the 32 px glyph size
GLYPH, DIGIT = 32, 22  # glyph canvas side; digits drawn 22 px tall
SIZE = 28
TRAIN, TEST, SEED = 50_000, 10_000, 0
VERSION = 2  # bump when the generation changes: caches from another version are rebuilt
CHUNK = 5000


@functools.lru_cache(maxsize=1)
def glyphs() -> Tensor:
    """(faces x strokes, 10, 32, 32) float masks in [0, 1], each digit centred and 22 px tall."""
    import matplotlib
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    masks = []
    for name in FONTS:
        font = ImageFont.truetype(str(folder / name), DIGIT)
        for stroke in STROKES:
            digits = []
            for digit in "0123456789":
                image = Image.new("L", (GLYPH, GLYPH))
                ImageDraw.Draw(image).text((GLYPH / 2, GLYPH / 2), digit, font=font, fill=255, anchor="mm",
                                           stroke_width=stroke, stroke_fill=255)
                digits.append(np.asarray(image, dtype=np.float32) / 255.0)
            masks.append(np.stack(digits))
    return torch.from_numpy(np.stack(masks))


@functools.lru_cache(maxsize=1)
def _base_grid() -> tuple[Tensor, Tensor]:
    """Each output pixel's centre (x, y) in [-1, 1], as F.affine_grid lays them out (1, 28, 28) each."""
    r = (torch.arange(SIZE, dtype=torch.float32) * 2 + 1) / SIZE - 1
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return xx.unsqueeze(0), yy.unsqueeze(0)


def _warp(masks: Tensor, scale: Tensor, angle: Tensor, shift_x: Tensor, shift_y: Tensor) -> Tensor:
    """Masks (n, 1, 32, 32) drawn at ``scale`` (digit height / image height), turned by ``angle``
    and moved by ``shift`` (fractions of the image), sampled bilinearly at 28 x 28."""
    n = len(masks)
    zoom = (DIGIT / GLYPH) / scale  # the glyph's digit fills ``scale`` of the output
    cos, sin = (torch.cos(angle) * zoom).view(n, 1, 1), (torch.sin(angle) * zoom).view(n, 1, 1)
    xx, yy = _base_grid()
    xx, yy = xx - 2 * shift_x.view(n, 1, 1), yy - 2 * shift_y.view(n, 1, 1)
    grid = torch.stack([cos * xx - sin * yy, sin * xx + cos * yy], -1)  # as F.affine_grid, faster on CPU
    return F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _blur(x: Tensor, sigma: Tensor) -> Tensor:
    """A Gaussian blur of each image (n, 3, H, W) with its own ``sigma`` (n,), 5 x 5 taps."""
    n, c = x.shape[:2]
    r = torch.arange(-2, 3, dtype=torch.float32)
    k = torch.exp(-(r.view(1, 5) ** 2) / (2 * sigma.clamp(min=1e-3).view(n, 1) ** 2))
    k = k / k.sum(1, keepdim=True)
    k = k.repeat_interleave(c, 0)
    out = F.pad(x.reshape(1, n * c, *x.shape[2:]), (2, 2, 2, 2), mode="replicate")
    out = F.conv2d(out, k.view(n * c, 1, 1, 5), groups=n * c)  # separable: rows, then columns
    out = F.conv2d(out, k.view(n * c, 1, 5, 1), groups=n * c)
    return out.view_as(x)


def _luma(rgb: Tensor) -> Tensor:
    return rgb @ torch.tensor([0.299, 0.587, 0.114])


def _draw(y: Tensor, g: torch.Generator) -> Tensor:
    """Images (n, 3, 28, 28) uint8 for the labels ``y``."""
    n = len(y)
    masks = glyphs()
    u = lambda low, high, *shape: low + (high - low) * torch.rand(n, *shape, generator=g)
    face = torch.randint(len(masks), (n,), generator=g)
    scale, angle = u(0.55, 0.9), u(-math.pi / 12, math.pi / 12)
    sx, sy = u(-0.1, 0.1), u(-0.1, 0.1)
    ink = _warp(masks[face, y].unsqueeze(1), scale, angle, sx, sy)
    for side in (-1, 1):  # neighbouring digits, cut by the border
        other = torch.randint(10, (n,), generator=g)
        present = (torch.rand(n, generator=g) < 0.5).nonzero().squeeze(1)
        gap = side * scale * u(0.6, 0.8)
        p = present
        ink[p] = torch.maximum(ink[p], _warp(masks[face[p], other[p]].unsqueeze(1), scale[p], angle[p], sx[p] + gap[p], sy[p]))
    back, fore = u(0, 1, 3), u(0, 1, 3)
    close = (_luma(back) - _luma(fore)).abs() < 0.3
    fore = torch.where(close.unsqueeze(1), (_luma(back) < 0.5).float().unsqueeze(1) * u(0.7, 1.0, 3)
                       + (_luma(back) >= 0.5).float().unsqueeze(1) * u(0.0, 0.3, 3), fore)
    direction = u(0, 2 * math.pi)
    ramp = torch.linspace(-0.5, 0.5, SIZE)
    shade = (torch.cos(direction).view(n, 1, 1) * ramp.view(1, 1, SIZE)
             + torch.sin(direction).view(n, 1, 1) * ramp.view(1, SIZE, 1)) * u(0, 0.4).view(n, 1, 1)
    background = (back.view(n, 3, 1, 1) + shade.unsqueeze(1)).clamp(0, 1)
    x = background * (1 - ink) + fore.view(n, 3, 1, 1) * ink
    x = _blur(x, u(0.0, 1.2)) + u(0, 0.08).view(n, 1, 1, 1) * torch.randn(n, 3, SIZE, SIZE, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def generate(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` synthetic digit images (n, 3, 28, 28) uint8 and their labels (n,) int64, from ``seed``.

    Every class has ``n // 10`` images (the first ``n % 10`` classes one more), in a seeded order.
    """
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % 10)[torch.randperm(n, generator=g)]
    x = torch.cat([_draw(y[i : i + CHUNK], g) for i in range(0, n, CHUNK)]) if n else torch.empty(0, 3, SIZE, SIZE, dtype=torch.uint8)
    return x, y


def build(train: int = TRAIN, test: int = TEST, seed: int = SEED) -> dict[str, Tensor]:
    """The train and test splits: test images come from ``seed + 1``, so the two never share a draw."""
    x_train, y_train = generate(train, seed)
    x_test, y_test = generate(test, seed + 1)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def load(root: Path, train: int = TRAIN, test: int = TEST, seed: int = SEED) -> DomainData:
    """The domain, from its cache under ``root`` (built on first use)."""
    recipe = {"generator": "syndigits", "version": VERSION, "train": train, "test": test, "seed": seed, "fonts": list(FONTS)}
    t = cached(Path(root), f"syndigits-{train}-{test}-seed{seed}", recipe, lambda: build(train, test, seed))
    return DomainData("syndigits", Split(to_unit_range(t["x_train"]), t["y_train"]),
                      Split(to_unit_range(t["x_test"]), t["y_test"]), num_classes=10)


@register_dataset("syndigits", num_classes=10, generated=True)
def syndigits(root: Path, download: bool, role: str) -> DomainData:
    """Digits rendered from matplotlib's fonts (3 x 28 x 28 colour): 50,000 train, 10,000 test."""
    return load(root, TRAIN, TEST, SEED)


"""Five of imagecorruptions' corruptions (version 1.1.2, the last release), ported: three to today's
libraries, two to run faster on grey digits.

imagecorruptions (Michaelis et al. 2019, the ImageNet-C code of Hendrycks & Dietterich, ICLR 2019,
packaged) was written for numpy 1 and scikit-image < 0.19. Under numpy 2 and scikit-image 0.26:

- ``glass_blur`` calls ``skimage.filters.gaussian(multichannel=True)``, an argument that no longer
  exists (now ``channel_axis``);
- ``fog`` builds its plasma fractal with ``np.float_``, removed in numpy 2;
- ``impulse_noise`` calls ``skimage.util.random_noise`` without ``rng``, which now draws from fresh
  OS entropy instead of numpy's global generator: the same seed gives other images each time.

Two more are ported for speed alone: ``frost`` reads and resizes its frost photograph (hundreds of
pixels a side) for every image, here once per photograph; ``zoom_blur`` zooms the three equal
channels of a grey image, here one.

Each port keeps the package's parameters and the order of its draws from numpy's global generator,
so ``glass_blur``, ``fog``, ``frost`` and ``zoom_blur`` give the package's images bit for bit
wherever it still runs (a test compares them with the package's, the removed argument restored). ``glass_blur`` also runs on one
grey plane, flattened into a Python list, rather than pixel by pixel on a 3-channel numpy array:
the package's pixel "swap" on a 3-channel array copies the neighbour's pixel into place and leaves
the neighbour as it was (both sides of its tuple assignment are views), and that is what this port
does, in the package's order, about 50 times faster (2 ms an image at 84 px).
``impulse_noise`` draws its generator's seed from the global generator, so a seed fixes its images.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

#: Per severity 1-5, as in imagecorruptions 1.1.2.
GLASS = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))  # sigma, max shift, iterations
FOG = ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))  # strength, fractal decay
IMPULSE = (0.03, 0.06, 0.09, 0.17, 0.27)  # fraction of pixels set to black or white
FROST = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))  # weight of the image, of the frost
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
ZOOM = ((1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02), (1, 1.31, 0.03))  # np.arange of zooms


def glass_blur(image: np.ndarray, severity: int) -> np.ndarray:
    """A grey-as-RGB uint8 image (H, W, 3) blurred, its pixels locally shuffled, blurred again: float (H, W, 3) in [0, 255]."""
    from skimage.filters import gaussian

    sigma, delta, iterations = GLASS[severity - 1]
    grey = np.uint8(gaussian(image[..., 0] / 255.0, sigma=sigma) * 255)
    h, w = grey.shape
    ys, xs = np.meshgrid(np.arange(h - delta, delta, -1), np.arange(w - delta, delta, -1), indexing="ij")
    targets = np.tile(ys.ravel() * w + xs.ravel(), iterations)  # the package's visiting order, flattened
    shifts = np.random.randint(-delta, delta, size=(len(targets), 2))  # its draws, in its order: (dx, dy)
    pixels = grey.ravel().tolist()
    for target, source in zip(targets.tolist(), (targets + shifts[:, 1] * w + shifts[:, 0]).tolist()):
        pixels[target] = pixels[source]  # one after the other: a pixel copied on may be copied again
    shuffled = np.asarray(pixels, dtype=np.uint8).reshape(h, w)
    out = np.clip(gaussian(shuffled / 255.0, sigma=sigma), 0, 1) * 255
    return np.repeat(out[..., None], 3, axis=2)


def plasma_fractal(mapsize: int = 256, wibbledecay: float = 3) -> np.ndarray:
    """A (mapsize, mapsize) height map in [0, 1] by the diamond-square algorithm (mapsize a power of
    two): the package's code, with ``np.float64`` for ``np.float_``."""
    assert mapsize & (mapsize - 1) == 0
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100.0

    def wibbledmean(array: np.ndarray) -> np.ndarray:
        return array / 4 + wibble * np.random.uniform(-wibble, wibble, array.shape)

    def fillsquares() -> None:  # each square's centre: the mean of its 4 corners, plus a wibble
        cornerref = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(squareaccum)

    def filldiamonds() -> None:  # each diamond's centre: the mean of 2 square centres and 2 corners
        drgrid = maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize]
        ulgrid = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        ltsum = (drgrid + np.roll(drgrid, 1, axis=0)) + (ulgrid + np.roll(ulgrid, -1, axis=1))
        maparray[0:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(ltsum)
        ttsum = (drgrid + np.roll(drgrid, 1, axis=1)) + (ulgrid + np.roll(ulgrid, -1, axis=0))
        maparray[stepsize // 2:mapsize:stepsize, 0:mapsize:stepsize] = wibbledmean(ttsum)

    while stepsize >= 2:
        fillsquares()
        filldiamonds()
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


def fog(image: np.ndarray, severity: int) -> np.ndarray:
    """A uint8 image (H, W, 3) under a plasma-fractal fog: float (H, W, 3) in [0, 255]."""
    strength, decay = FOG[severity - 1]
    h, w = image.shape[:2]
    x = image / 255.0
    max_val = x.max()
    size = 1 << (max(h, w) - 1).bit_length()  # the next power of two
    x += strength * plasma_fractal(mapsize=size, wibbledecay=decay)[:h, :w][..., np.newaxis]
    return np.clip(x * max_val / (max_val + strength), 0, 1) * 255


def impulse_noise(image: np.ndarray, severity: int) -> np.ndarray:
    """A uint8 image with salt-and-pepper noise: float in [0, 255]; seeded by numpy's global generator."""
    from skimage.util import random_noise

    rng = np.random.default_rng(np.random.randint(2**31))
    return np.clip(random_noise(image / 255.0, mode="s&p", amount=IMPULSE[severity - 1], rng=rng), 0, 1) * 255


@functools.lru_cache(maxsize=None)
def frost_texture(index: int, scale: float) -> np.ndarray:
    """The package's frost photograph ``index`` (BGR uint8), resized by ``scale`` (bicubic)."""
    import cv2
    import imagecorruptions

    frost = cv2.imread(str(Path(imagecorruptions.__file__).parent / "frost" / FROST_FILES[index]))
    size = (int(np.ceil(frost.shape[1] * scale)), int(np.ceil(frost.shape[0] * scale)))
    return cv2.resize(frost, dsize=size, interpolation=cv2.INTER_CUBIC)


def frost(image: np.ndarray, severity: int) -> np.ndarray:
    """A uint8 image (H, W, 3) seen through a random crop of a frost photograph: float (H, W, 3) in [0, 255]."""
    weight, frost_weight = FROST[severity - 1]
    index = np.random.randint(5)  # as the package: its sixth photograph is never drawn
    h, w = image.shape[:2]
    full = frost_texture(index, 1.0)
    texture = frost_texture(index, max(1.0, h / full.shape[0], w / full.shape[1]) * 1.1)
    top, left = np.random.randint(0, texture.shape[0] - h), np.random.randint(0, texture.shape[1] - w)
    crop = texture[top : top + h, left : left + w][..., [2, 1, 0]]
    return np.clip(weight * image + frost_weight * crop, 0, 255)


def zoom_blur(image: np.ndarray, severity: int) -> np.ndarray:
    """A grey-as-RGB uint8 image (H, W, 3) averaged with centred zooms of itself: float (H, W, 3) in [0, 255]."""
    from scipy.ndimage import zoom

    x = (image[..., 0] / 255.0).astype(np.float32)
    h, w = x.shape
    out = np.zeros_like(x)
    factors = np.arange(*ZOOM[severity - 1])
    for factor in factors:
        ch, cw = int(np.ceil(h / float(factor))), int(np.ceil(w / float(factor)))
        top, left = (h - ch) // 2, (w - cw) // 2
        layer = zoom(x[top : top + ch, left : left + cw], (factor, factor), order=1)[:h, :w]
        out[: layer.shape[0], : layer.shape[1]] += layer
    x = (x + out) / (len(factors) + 1)
    return np.repeat(np.clip(x, 0, 1)[..., None] * 255, 3, axis=2)


PORTS = {"glass_blur": glass_blur, "fog": fog, "impulse_noise": impulse_noise, "frost": frost, "zoom_blur": zoom_blur}

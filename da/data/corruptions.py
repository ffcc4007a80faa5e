"""The 15 corruptions of Hendrycks & Dietterich (ICLR 2019), applied to grey 28 x 28 digits.

"Benchmarking Neural Network Robustness to Common Corruptions and Perturbations" defines 15
corruptions in four families (noise, blur, weather, digital) at severities 1-5, the corruptions of
ImageNet-C and CIFAR-10-C. They are computed here by the package imagecorruptions (ImageNet-C's
code and parameters; three functions ported to today's numpy and scikit-image in
``da.data.corruption_ports``). This is not MNIST-C of Mu & Gilmer (2019), a different set of 15
corruptions designed for digits; it is Hendrycks' set applied to digits, as CIFAR-10-C is.

Resolution. ImageNet-C's parameters are in pixels of a 224 px image, and the package refuses images
under 32 px. Two kinds of corruption are told apart:

- per-pixel ones (``PER_PIXEL``: the three noises, brightness, contrast, pixelate, JPEG) mean the
  same at any size and act on the pixels the network sees: the digit is padded to 32 px (edge
  pixels), corrupted, and cropped back to 28 px, so no resampling softens them;
- spatial ones (blurs, weather, elastic) have kernels, shifts and textures sized for a large image:
  at 28 px, defocus blur at severity 3 already leaves a blob, and an MNIST LeNet is at chance on
  defocus and motion blur at severity 5. The digit is upscaled to ``SPATIAL_SIZE`` = 84 px (3 x,
  bilinear), corrupted, and brought back to 28 px by area averaging (3 x 3 pixel means). At 84 px
  every severity-5 digit can still be read by eye, and the source model's accuracy spreads from
  chance to clean across corruptions as on CIFAR-10-C (docs/corrupted_digits.md); at 64 px it is
  at chance on defocus blur, at 112 px blur barely hurts it.

The package works on RGB; a grey digit goes in as three equal channels (as its ``corrupt`` does)
and comes out as its luma (ITU-R 601, as PIL's ``convert("L")``), rounded to uint8. Each image is
corrupted from its own seed, a hash of (seed, corruption, severity, split, index in the clean
split), set into numpy's global generator, which the package draws from: an image's corruption does
not depend on which other images are corrupted with it, nor on how the work is split between
processes.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import typing
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Callable, Literal

import numpy as np
import torch
from torch import Tensor

from da.data.corruption_ports import PORTS
from da.errors import DAError

#: Hendrycks & Dietterich's 15 corruptions, in their order (noise, blur, weather, digital).
Corruption = Literal["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
                     "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
                     "jpeg_compression"]
Severity = Literal[1, 2, 3, 4, 5]
CORRUPTIONS: tuple[str, ...] = typing.get_args(Corruption)
#: Corruptions that act pixel by pixel (or on JPEG's 8 x 8 blocks): applied at the digit's own 28 px.
PER_PIXEL = frozenset({"gaussian_noise", "shot_noise", "impulse_noise", "brightness", "contrast", "pixelate",
                       "jpeg_compression"})
#: The side, in pixels, at which spatial corruptions are applied (see the module's docstring).
SPATIAL_SIZE = 84
SIZE = 28
PAD = 2  # 28 + 2 * 2 = 32, the package's smallest image
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)
#: Images per task sent to a worker process.
CHUNK = 500
PACKAGE = "imagecorruptions"


def package_version() -> str:
    """The installed imagecorruptions' version (a cache made with another is rebuilt)."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise DAError(f"the corrupted digit domains (mnist_c, usps_c) need the package {PACKAGE}, which is not "
                      f"installed; pip install {PACKAGE}") from None


@functools.lru_cache(maxsize=None)
def corruption_function(name: str) -> Callable[[np.ndarray, int], np.ndarray]:
    """``f(rgb uint8 (H, W, 3), severity) -> float (H, W, 3) in [0, 255]`` for ``name``."""
    if name not in CORRUPTIONS:
        raise DAError(f"unknown corruption {name!r}; one of {', '.join(CORRUPTIONS)}")
    package_version()
    if name in PORTS:
        return PORTS[name]
    with warnings.catch_warnings():  # it imports pkg_resources and scipy.ndimage.interpolation, both deprecated
        warnings.simplefilter("ignore")
        from imagecorruptions import corruptions
        from PIL import Image
    function = getattr(corruptions, name)
    return lambda rgb, severity: np.asarray(function(Image.fromarray(rgb), severity), dtype=np.float64)


def image_seed(seed: int, corruption: str, severity: int, split: str, index: int) -> int:
    """The seed of one image's corruption: a hash of where the image is and what is done to it."""
    text = f"{seed}/{corruption}/{severity}/{split}/{index}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


def _resize(image: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    import cv2  # installed with imagecorruptions, which corruption_function has checked

    return cv2.resize(image, (size, size), interpolation=getattr(cv2, interpolation))


def corrupt_digit(image: np.ndarray, corruption: str, severity: int, seed: int) -> np.ndarray:
    """One grey uint8 (28, 28) digit corrupted, as uint8 (28, 28), from ``seed``."""
    function = corruption_function(corruption)
    per_pixel = corruption in PER_PIXEL
    work = np.pad(image, PAD, mode="edge") if per_pixel else _resize(image, SPATIAL_SIZE, "INTER_LINEAR")
    np.random.seed(seed)
    with warnings.catch_warnings():  # scikit-image and scipy deprecations inside the package
        warnings.simplefilter("ignore")
        out = function(np.repeat(work[..., None], 3, axis=2), severity) @ LUMA
    out = out[PAD:-PAD, PAD:-PAD] if per_pixel else _resize(out, SIZE, "INTER_AREA")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _corrupt_chunk(images: np.ndarray, indices: list[int], corruption: str, severity: int, split: str,
                   seed: int) -> np.ndarray:
    return np.stack([corrupt_digit(image, corruption, severity, image_seed(seed, corruption, severity, split, i))
                     for image, i in zip(images, indices)])


def workers() -> int:
    """Processes to corrupt a split with: the cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def corrupt(images: Tensor, corruption: str, severity: int, split: str, seed: int,
            indices: Tensor | None = None, processes: int | None = None) -> Tensor:
    """Grey uint8 digits (n, 28, 28) corrupted, uint8 (n, 28, 28). Image k is seeded by
    ``indices[k]`` (its index in the clean split; default ``k``), so a subset, a chunk or a worker
    gives each image the same corruption. ``processes`` > 1 spreads the chunks over processes."""
    if severity not in (1, 2, 3, 4, 5):
        raise DAError(f"corruption severity must be 1-5, got {severity!r}")
    corruption_function(corruption)  # an unknown name or a missing package: one line, before any work
    x = images.numpy()
    index = (indices if indices is not None else torch.arange(len(x))).tolist()
    chunks = [(x[i : i + CHUNK], index[i : i + CHUNK]) for i in range(0, len(x), CHUNK)]
    processes = min(processes or workers(), len(chunks))
    if processes <= 1:
        parts = [_corrupt_chunk(c, i, corruption, severity, split, seed) for c, i in chunks]
    else:  # spawn: a fork of a process that runs torch's thread pools can hang
        task = functools.partial(_corrupt_chunk, corruption=corruption, severity=severity, split=split, seed=seed)
        try:
            with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
                parts = list(pool.map(task, *zip(*chunks)))
        except BrokenProcessPool:  # a worker could not start (a __main__ read from stdin cannot be re-imported)
            warnings.warn("corrupting in one process: the worker processes could not start", stacklevel=2)
            parts = [task(c, i) for c, i in chunks]
    return torch.from_numpy(np.concatenate(parts)) if parts else torch.empty(0, SIZE, SIZE, dtype=torch.uint8)

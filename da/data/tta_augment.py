"""CoTTA's test-time augmentation, on whole batch tensors.

Wang et al., "Continual Test-Time Domain Adaptation" (CVPR 2022; github.com/qinenergy/cotta,
``cotta.py``'s ``get_tta_transforms`` with ``soft=False``, the CIFAR-10 setting): clip to [0, 1];
colour jitter in a random order (brightness in [0.6, 1.4], contrast in [0.7, 1.3], saturation in
[0.5, 1.5], hue in [-0.06, 0.06], gamma in [0.7, 1.3]); edge padding by half the image side; a
random affine map (rotation in +-15 degrees, shift up to 1/16 of the padded side rounded to whole
pixels, zoom in [0.9, 1.1], bilinear); a 5x5 Gaussian blur with sigma in [0.001, 0.5]; the centre
crop back to the image's size; a horizontal flip with probability ``hflip`` (CoTTA: 0.5 on CIFAR;
here 0 by default, since a mirrored 2, 3, 5 or 7 is no digit); Gaussian noise of standard deviation
0.005; clip to [0, 1].

CoTTA applies its torchvision pipeline to the batch tensor, so each call draws one set of
parameters for the whole batch (the noise alone is drawn per pixel); so does this. Every draw comes
from ``generator``, so a seeded stream is reproducible and a resumed one draws what it would have
drawn. Saturation and hue leave a one-channel image unchanged (torchvision's rule, as in CoTTA).

The model's inputs are normalised images: ``mean`` and ``std`` (per channel) map them to [0, 1]
and back (``unit = x * std + mean``); da's in-memory digits are in [-1, 1], mean = std = 0.5.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torchvision.transforms.functional as TF
from torch import Tensor

BRIGHTNESS, CONTRAST, SATURATION, HUE, GAMMA = (0.6, 1.4), (0.7, 1.3), (0.5, 1.5), (-0.06, 0.06), (0.7, 1.3)
DEGREES, TRANSLATE, SCALE = 15.0, 1.0 / 16.0, (0.9, 1.1)
BLUR_KERNEL, BLUR_SIGMA = 5, (0.001, 0.5)
NOISE_STD = 0.005


class CoTTAAugment:
    """One random CoTTA view of a batch per call (see the module's docstring)."""

    def __init__(self, generator: torch.Generator, mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.5,),
                 hflip: float = 0.0) -> None:
        self.generator = generator
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.hflip = hflip

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=self.generator))

    def __call__(self, x: Tensor) -> Tensor:
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        u = (x * std + mean).clamp(0.0, 1.0)
        u = self.jitter(u)
        u = self.geometry(u)
        if self.hflip > 0 and self.uniform(0.0, 1.0) < self.hflip:
            u = u.flip(-1)
        noise = torch.randn(u.shape, generator=self.generator).to(u.device, u.dtype)
        u = (u + NOISE_STD * noise).clamp(0.0, 1.0)
        return (u - mean) / std

    def jitter(self, u: Tensor) -> Tensor:
        """CoTTA's ``ColorJitterPro``: the five adjustments in a random order, each factor drawn as it comes."""
        ops: list[tuple[tuple[float, float], Callable[[Tensor, float], Tensor]]] = [
            (BRIGHTNESS, TF.adjust_brightness), (CONTRAST, TF.adjust_contrast), (SATURATION, TF.adjust_saturation),
            (HUE, TF.adjust_hue), (GAMMA, lambda img, g: TF.adjust_gamma(img.clamp(1e-8, 1.0), g))]
        for i in torch.randperm(len(ops), generator=self.generator).tolist():
            (low, high), op = ops[i]
            u = op(u, self.uniform(low, high))
        return u

    def geometry(self, u: Tensor) -> Tensor:
        """Edge padding, random affine (bilinear), Gaussian blur, centre crop: CoTTA's order and ranges."""
        h, w = u.shape[-2:]
        padded = TF.pad(u, [w // 2, h // 2], padding_mode="edge")
        ph, pw = padded.shape[-2:]
        angle = self.uniform(-DEGREES, DEGREES)
        tx = round(self.uniform(-TRANSLATE * pw, TRANSLATE * pw))
        ty = round(self.uniform(-TRANSLATE * ph, TRANSLATE * ph))
        scale = self.uniform(*SCALE)
        moved = TF.affine(padded, angle, [tx, ty], scale, [0.0, 0.0],
                          interpolation=TF.InterpolationMode.BILINEAR, fill=[0.0] * u.shape[1])
        sigma = self.uniform(*BLUR_SIGMA)
        blurred = TF.gaussian_blur(moved, [BLUR_KERNEL, BLUR_KERNEL], [sigma, sigma])
        return TF.center_crop(blurred, [h, w])

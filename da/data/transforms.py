"""Per-image transforms (torchvision.transforms.v2) for image folders and lists: named presets and
YAML lists, followed by the backbone's normalisation.

Every transform works on a uint8 (C, H, W) tensor decoded from the file; the last step turns it
into float32 normalised with the backbone's ``pretrained_cfg`` mean and std. Presets, sized from the
backbone's input size S (224 for ResNets, 28 for LeNet) and its test crop's share ``crop_pct``
(0.875 for ResNets; timm's for a timm model), R = floor(S / crop_pct) (256 for 224 at 0.875); every
resize uses the backbone's interpolation (bilinear for ResNets, a timm model's own, bicubic for CLIP):

- ``resize``: resize to S x S (LeNet's default: digits are not cropped).
- ``resize_crop_flip``: resize to R x R, random resized crop to S, random horizontal flip: the train
  transform of Transfer-Learning-Library's Office benchmarks (``ResizeImage(256)``,
  ``RandomResizedCrop(224)``, flip; Long et al. 2018 and later), a ResNet's default for training.
- ``center_crop``: resize to R x R, centre crop to S: the field's test transform; timm's eval
  transform with ``crop_mode: squash`` (timm's default ``center`` resizes the shorter side to R
  instead; the square keeps one cached resize for train and test, as the field's Office protocol does).
- ``resize_flip``: resize to S x S, random horizontal flip.

A YAML list names v2 transforms with their arguments, e.g.
``[{name: RandomResizedCrop, size: 224, scale: [0.5, 1]}, RandomHorizontalFlip, {name: ColorJitter, brightness: 0.4}]``.
"""
from __future__ import annotations

import difflib
import math
from typing import Any

import torch
from torch import Tensor

from da.errors import DAError
from da.models.pretrained import PretrainedCfg

PRESETS = ("resize", "resize_crop_flip", "center_crop", "resize_flip")
#: Steps the pipeline adds itself: a list that names them would convert or normalise twice.
ADDED_BY_DA = ("ToImage", "ToTensor", "PILToTensor", "ToDtype", "ToPureTensor", "Normalize", "ConvertImageDtype")


class Normalise:
    """uint8 (N, C, H, W) -> float32 ``(x / 255 - mean) / std``, computed as ``x / (255 std) - mean / std``.

    With mean 0.5 and std 0.5 that is ``x / 127.5 - 1``, the very operations of
    ``da.data.domain.to_unit_range``: a digit read from a PNG equals the in-memory one bit for bit.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.scale = [255.0 * s for s in std]
        self.shift = [m / s for m, s in zip(mean, std)]

    def __call__(self, x: Tensor) -> Tensor:
        x = x.float()
        if len(self.scale) == 1 or len(set(self.scale)) == 1 and len(set(self.shift)) == 1:
            return x.div_(self.scale[0]).sub_(self.shift[0])
        scale = torch.tensor(self.scale, device=x.device).view(-1, 1, 1)
        shift = torch.tensor(self.shift, device=x.device).view(-1, 1, 1)
        return x.div_(scale).sub_(shift)


class ImageTransform:
    """A list of v2 transforms on uint8 tensors; ``normalise`` (a :class:`Normalise`) runs on whole
    batches afterwards (one operation per batch instead of per image, and uint8 crosses from the
    loader workers and to the GPU: a quarter of float32's bytes).

    ``random``: whether any step draws random numbers (the loader seeds those per image).
    ``cached_resize``: the (height, width) of a leading fixed-size ``Resize``, which a decoded cache
    may apply once ahead of time (``da.data.decoded_cache``); None when the list does not start with one.
    """

    def __init__(self, steps: list[Any], normalise: Normalise, description: str) -> None:
        from torchvision.transforms import v2

        self.steps = steps
        self.compose = v2.Compose(steps) if steps else None
        self.normalise = normalise
        self.description = description
        self.random = any(type(s).__name__.startswith("Random") or type(s).__name__ in ("RandAugment", "AutoAugment",
                          "TrivialAugmentWide", "AugMix", "ColorJitter") for s in steps)
        first = steps[0] if steps else None
        size = getattr(first, "size", None) if type(first).__name__ == "Resize" else None
        self.cached_resize = tuple(size) if isinstance(size, (list, tuple)) and len(size) == 2 else None

    def __call__(self, image: Tensor, resized: bool = False) -> Tensor:
        """``image``: uint8 (C, H, W) -> uint8 (C, H', W'); ``resized``: it already went through the
        leading Resize (a cached image)."""
        from torchvision import tv_tensors

        steps = self.steps[1:] if resized else self.steps
        if not steps:
            return image
        x = tv_tensors.Image(image)
        for step in steps:
            x = step(x)
        return x.as_subclass(Tensor)


def preset_steps(name: str, cfg: PretrainedCfg) -> list[Any]:
    from torchvision.transforms import v2

    size = cfg.input_size[1:]
    big = tuple(math.floor(s / cfg.crop_pct + 1e-6) for s in size)  # timm's scale_size; + 1e-6: 224 / 0.875 is 256
    mode = v2.InterpolationMode(cfg.interpolation)
    if name == "resize":
        return [v2.Resize(size, mode, antialias=True)]
    if name == "resize_flip":
        return [v2.Resize(size, mode, antialias=True), v2.RandomHorizontalFlip()]
    if name == "resize_crop_flip":
        return [v2.Resize(big, mode, antialias=True), v2.RandomResizedCrop(size, interpolation=mode, antialias=True),
                v2.RandomHorizontalFlip()]
    if name == "center_crop":
        return [v2.Resize(big, mode, antialias=True), v2.CenterCrop(size)]
    raise DAError(f"no transform preset {name!r}; presets: {', '.join(PRESETS)}, or a list of torchvision.transforms.v2 steps")


def list_steps(items: list[Any], key: str) -> list[Any]:
    """A YAML list of v2 transforms: each a name, or a mapping ``{name: Name, **arguments}``."""
    from torchvision.transforms import v2

    known = sorted(n for n in dir(v2) if isinstance(getattr(v2, n), type) and issubclass(getattr(v2, n), v2.Transform))
    steps = []
    for i, item in enumerate(items):
        where = f"config key {key}[{i}]"
        if isinstance(item, str):
            name, kwargs = item, {}
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            kwargs = {k: v for k, v in item.items() if k != "name"}
            name = item["name"]
        else:
            raise DAError(f"{where} must be a transform name or a mapping with a name, e.g. "
                          f"{{name: RandomResizedCrop, size: 224}}; got {item!r}")
        if name in ADDED_BY_DA:
            raise DAError(f"{where}: {name} is added by da itself (decoding to a tensor, then the backbone's mean "
                          f"and std); remove it from the list")
        if name not in known:
            near = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {near[0]}?" if near else "see torchvision.transforms.v2 for the names"
            raise DAError(f"{where}: torchvision.transforms.v2 has no transform {name!r}; {hint}")
        try:
            steps.append(getattr(v2, name)(**kwargs))
        except (TypeError, ValueError) as exc:
            raise DAError(f"{where}: {name} rejected its arguments {kwargs}: {str(exc).splitlines()[0]}") from None
    return steps


def check_transform_spec(value: Any, key: str) -> None:
    """Validate ``data.transforms.train`` or ``.test``: a preset name or a list (raises DAError)."""
    if isinstance(value, str):
        if value not in PRESETS:
            near = difflib.get_close_matches(value, PRESETS, n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            raise DAError(f"config key {key}: no preset {value!r}; {hint}presets: {', '.join(PRESETS)}")
    elif isinstance(value, list):
        list_steps(value, key)
    elif value is not None:
        raise DAError(f"config key {key} must be a preset name ({', '.join(PRESETS)}) or a list of "
                      f"torchvision.transforms.v2 steps; got {value!r}")


def build_transform(spec: Any, cfg: PretrainedCfg, default: str, key: str) -> ImageTransform:
    """``spec`` (a preset name, a list, or None for the backbone's ``default``) -> an :class:`ImageTransform`."""
    spec = default if spec is None else spec
    steps = preset_steps(spec, cfg) if isinstance(spec, str) else list_steps(spec, key)
    description = spec if isinstance(spec, str) else "[" + ", ".join(type(s).__name__ for s in steps) + "]"
    return ImageTransform(steps, Normalise(cfg.mean, cfg.std), description)

"""What each backbone expects of its input, and loading pretrained weights from a local file.

A backbone's ``pretrained_cfg`` (the idea of timm's ``pretrained_cfg``; a field of its registered
``da.models.backbone_entry.BackboneEntry``) gives its input size, its channels, and the mean and
standard deviation its weights were trained with, so the data pipeline normalises images as the weights expect: ImageNet statistics for torchvision ResNets (He et al. 2016),
``mean 0.5, std 0.5`` for LeNet, which maps pixels to [-1, 1] exactly as the in-memory digits are.
It also names the backbone's default train and test transforms (``da.data.transforms`` presets),
the interpolation its resizes use and the fraction of the resized image its test crop keeps
(``crop_pct``): timm's (Wightman 2019) ``resolve_data_config`` gives all of these for a timm model.

Weights files are PyTorch state dicts or safetensors (``.safetensors``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from da.errors import DAError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainedCfg:
    """A backbone's input: (channels, height, width), per-channel mean and std on [0, 1] pixels,
    the names of its default train and test transforms, the resizes' interpolation and the test
    crop's share of the resized side (timm's ``crop_pct``: 224 / 256 = 0.875 for ImageNet)."""

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_transform: str
    test_transform: str
    interpolation: str = "bilinear"
    crop_pct: float = 0.875

    @property
    def channels(self) -> int:
        return self.input_size[0]

    def record(self) -> dict[str, Any]:
        """summary.json's ``preprocessing``: timm's data-config keys, and the transforms named."""
        return {"input_size": list(self.input_size), "interpolation": self.interpolation, "crop_pct": self.crop_pct,
                "mean": list(self.mean), "std": list(self.std), "train_transform": self.train_transform,
                "test_transform": self.test_transform}


#: LeNet on 28x28 grey digits: pixels / 127.5 - 1, as ``da.data.domain.to_unit_range``.
DIGITS = PretrainedCfg((1, 28, 28), (0.5,), (0.5,), "resize", "resize")
#: torchvision's ImageNet weights: 224x224 RGB crops, ImageNet statistics; the field's Office transforms.
IMAGENET = PretrainedCfg((3, 224, 224), IMAGENET_MEAN, IMAGENET_STD, "resize_crop_flip", "center_crop")


def read_state_dict(path: str | Path, key: str = "model.weights") -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a PyTorch file (unwrapped from ``state_dict`` /
    ``model``, ``module.`` prefixes removed); a missing or unreadable file is one line naming it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DAError(f"{key}: no file {path}; download the backbone's weights (e.g. resnet50-11ad3fa6.pth or a "
                      f"model.safetensors) to that path, or set model.pretrained: true with network access")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # a dependency of timm; only weights files need it

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DAError(f"{key}: {path} is not a readable {'safetensors' if path.suffix == '.safetensors' else 'PyTorch'} "
                      f"state dict ({type(exc).__name__}); download it again") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise DAError(f"{key}: {path} holds a {type(state).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_weights(extractor: nn.Module, path: str | Path, key: str = "model.weights") -> None:
    """Load a local state dict (a torchvision ``.pth`` such as ``resnet50-11ad3fa6.pth``, a timm
    ``model.safetensors``) into ``extractor``.

    The classifier's keys are dropped: the extractor has no classifier. A backbone whose module has
    ``adapt_state(state)`` maps the keys itself first (timm's ``checkpoint_filter_fn``, its
    classifier's name); one with ``load_weights_file(path, key)`` reads the file itself (a CLIP
    checkpoint, both towers); others drop ``fc.*`` (torchvision). A file whose keys do not fit the
    backbone is one line naming what is missing or unexpected.
    """
    path = Path(path).expanduser()
    target = getattr(extractor, "backbone", extractor)  # under a bottleneck, the backbone takes the weights
    if hasattr(target, "load_weights_file"):  # a CLIP model: the file holds both towers
        return target.load_weights_file(path, key)
    state = read_state_dict(path, key)
    if hasattr(target, "adapt_state"):
        state = target.adapt_state(state, f"{key}: {path}")
    else:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    target = getattr(target, "net", target)  # a classifier wrapped by TorchvisionFeatures / TimmFeatures
    try:
        missing, unexpected = target.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of another shape
        detail = next((l.strip() for l in str(exc).splitlines() if "size mismatch" in l), "shapes differ")
        raise DAError(f"{key}: {path} does not fit model.backbone ({detail[:160]}); "
                      f"give the weights file of the same architecture") from None
    if missing or unexpected:
        raise DAError(mismatch(f"{key}: {path}", missing, unexpected))


def mismatch(what: str, missing: list[str], unexpected: list[str]) -> str:
    """One line on a weights file whose keys do not fit: how many are missing and unexpected, and the first of each."""
    shown = [f"missing {missing[0]}" if missing else "", f"unexpected {unexpected[0]}" if unexpected else ""]
    return (f"{what} does not fit model.backbone ({len(missing)} keys missing, {len(unexpected)} unexpected: "
            f"{', '.join(s for s in shown if s)}); give the weights file of the same architecture")

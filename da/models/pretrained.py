"""What each backbone expects of its input, and loading pretrained weights from a local file.

A backbone's ``pretrained_cfg`` (the idea of timm's ``pretrained_cfg``; a field of its registered
``da.models.backbone_entry.BackboneEntry``) gives its input size, its channels, and the mean and
standard deviation its weights were trained with, so the data pipeline normalises images as the weights expect: ImageNet statistics for torchvision ResNets (He et al. 2016),
``mean 0.5, std 0.5`` for LeNet, which maps pixels to [-1, 1] exactly as the in-memory digits are.
It also names the backbone's default train and test transforms (``da.data.transforms`` presets).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from da.errors import DAError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PretrainedCfg:
    """A backbone's input: (channels, height, width), per-channel mean and std on [0, 1] pixels,
    and the names of its default train and test transforms."""

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_transform: str
    test_transform: str

    @property
    def channels(self) -> int:
        return self.input_size[0]


#: LeNet on 28x28 grey digits: pixels / 127.5 - 1, as ``da.data.domain.to_unit_range``.
DIGITS = PretrainedCfg((1, 28, 28), (0.5,), (0.5,), "resize", "resize")
#: torchvision's ImageNet weights: 224x224 RGB crops, ImageNet statistics; the field's Office transforms.
IMAGENET = PretrainedCfg((3, 224, 224), IMAGENET_MEAN, IMAGENET_STD, "resize_crop_flip", "center_crop")


def load_weights(extractor: nn.Module, path: str | Path) -> None:
    """Load a local state dict (a torchvision ``.pth`` such as ``resnet50-11ad3fa6.pth``) into ``extractor``.

    The classifier's keys (``fc.*``) are dropped: the extractor has no classifier. A file that is
    missing, unreadable, or whose keys do not fit the backbone is one line naming it.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DAError(f"model.weights: no file {path}; download the backbone's torchvision weights "
                      f"(e.g. resnet50-11ad3fa6.pth) to that path, or set model.pretrained: true with network access")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DAError(f"model.weights: {path} is not a readable PyTorch state dict ({type(exc).__name__}); "
                      f"download it again") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise DAError(f"model.weights: {path} holds a {type(state).__name__}, not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    target = getattr(extractor, "backbone", extractor)  # under a bottleneck, the backbone takes the weights
    target = getattr(target, "net", target)  # a torchvision classifier wrapped by TorchvisionFeatures
    try:
        missing, unexpected = target.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of another shape
        detail = next((l.strip() for l in str(exc).splitlines() if "size mismatch" in l), "shapes differ")
        raise DAError(f"model.weights: {path} does not fit model.backbone ({detail[:160]}); "
                      f"give the weights file of the same architecture") from None
    if missing or unexpected:
        what = f"lacks {missing[0]}" if missing else f"has {unexpected[0]}, which the backbone does not"
        raise DAError(f"model.weights: {path} does not fit model.backbone ({len(missing)} keys missing, "
                      f"{len(unexpected)} unexpected; it {what}); give the weights file of the same architecture")

"""Feature extractors: the LeNet of the digits literature and torchvision ResNets.

Every backbone maps (N, C, H, W) images to (N, out_features) features and exposes
``out_features``; ``pretrained=True`` asks for ImageNet weights where they exist.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from da.errors import DAError
from da.registry import register_backbone


class LeNet(nn.Sequential):
    """The 20-50-500 LeNet used for digits adaptation (LeCun et al. 1998; as in ADDA and TLlib)."""

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, 20, kernel_size=5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(20, 50, kernel_size=5),
            nn.Dropout2d(p=0.5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(50 * 4 * 4, 500),
            nn.ReLU(),
            nn.Dropout(p=0.5),
        )
        self.out_features = 500


@register_backbone("lenet")
def lenet(pretrained: bool = False, in_channels: int = 1) -> LeNet:
    """LeNet 20-50-500 for 28x28 digits; pretrain it on the source with the ``pretrain`` stage."""
    if pretrained:
        raise DAError("backbone lenet has no ImageNet weights; set model.pretrained: false and use the pretrain stage")
    return LeNet(in_channels)


class TorchvisionFeatures(nn.Module):
    """A torchvision classifier with its last layer removed; grey images are repeated to 3 channels."""

    def __init__(self, net: nn.Module, out_features: int) -> None:
        super().__init__()
        net.fc = nn.Identity()
        self.net = net
        self.out_features = out_features

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x)


def _resnet(name: str, pretrained: bool) -> TorchvisionFeatures:
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT if pretrained else None
    try:
        net = torchvision.models.get_model(name, weights=weights)
    except Exception as exc:  # URLError / OSError when offline, RuntimeError on a corrupt file
        raise DAError(
            f"ImageNet weights for {name} are not in torch's cache ({torch.hub.get_dir()}/checkpoints) "
            f"and could not be downloaded ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"copy {weights.url.rsplit('/', 1)[-1]} there or set model.pretrained: false"
        ) from None
    return TorchvisionFeatures(net, net.fc.in_features)


@register_backbone("resnet18")
def resnet18(pretrained: bool = False, in_channels: int = 1) -> TorchvisionFeatures:
    """torchvision ResNet-18 (He et al. 2016), 512-d features; ImageNet weights when pretrained."""
    return _resnet("resnet18", pretrained)


@register_backbone("resnet50")
def resnet50(pretrained: bool = False, in_channels: int = 1) -> TorchvisionFeatures:
    """torchvision ResNet-50 (He et al. 2016), 2048-d features; ImageNet weights when pretrained."""
    return _resnet("resnet50", pretrained)

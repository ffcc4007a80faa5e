"""LeNet with normalisation layers, for the methods that adapt them at test time.

Test-time adaptation methods act through a network's normalisation layers: ``norm`` re-estimates
batch-norm statistics on the test batch (Schneider et al., NeurIPS 2020), ``tent`` trains their
affine parameters (Wang et al., ICLR 2021). The digits' LeNet has none, so these variants add one
after each of its three layers: batch norm (``lenet_bn``, as the LeNet of SHOT's digit code,
Liang et al. 2020), or group norm (``lenet_gn``, Wu & He, ECCV 2018), whose statistics are each
image's own, so that a stream of batch size 1 is meaningful (SAR, Niu et al., ICLR 2023, adapts
group- and layer-norm models for that reason).
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from da.errors import DAError
from da.models.backbone_entry import register_backbone
from da.models.backbones import LeNet
from da.models.pretrained import DIGITS


class NormLeNet(LeNet):
    """LeNet 20-50-500 with a normalisation layer after each conv and the fully connected layer:
    ``norm(channels)`` makes each (conv1: 20, conv2: 50, fc: 500)."""

    BLOCKS = {"conv1": slice(0, 4), "conv2": slice(4, 9), "fc": slice(9, 14)}

    def __init__(self, norm: Callable[[int], nn.Module], in_channels: int = 1) -> None:
        nn.Sequential.__init__(
            self,
            nn.Conv2d(in_channels, 20, kernel_size=5),
            norm(20),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(20, 50, kernel_size=5),
            norm(50),
            nn.Dropout2d(p=0.5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(50 * 4 * 4, 500),
            norm(500),
            nn.ReLU(),
            nn.Dropout(p=0.5),
        )
        self.out_features = 500


def batch_norm(channels: int) -> nn.Module:
    return nn.BatchNorm1d(channels) if channels == 500 else nn.BatchNorm2d(channels)


def group_norm(channels: int) -> nn.Module:
    """Groups of 5 channels (4, 10 and 100 groups), a width that divides all three layers."""
    return nn.GroupNorm(channels // 5, channels)


def no_weights(name: str) -> None:
    raise DAError(f"backbone {name} has no ImageNet weights; set model.pretrained: false and use the pretrain stage")


@register_backbone("lenet_bn", pretrained_cfg=DIGITS, block_names=tuple(NormLeNet.BLOCKS), out_features=500,
                   batch_norm=True)
def lenet_bn(pretrained: bool = False, in_channels: int = 1) -> NormLeNet:
    """LeNet 20-50-500 with batch norm after each layer (the model ``norm`` and ``tent`` adapt)."""
    if pretrained:
        no_weights("lenet_bn")
    return NormLeNet(batch_norm, in_channels)


@register_backbone("lenet_gn", pretrained_cfg=DIGITS, block_names=tuple(NormLeNet.BLOCKS), out_features=500,
                   batch_norm=False)
def lenet_gn(pretrained: bool = False, in_channels: int = 1) -> NormLeNet:
    """LeNet 20-50-500 with group norm after each layer: test-time adaptation at batch size 1."""
    if pretrained:
        no_weights("lenet_gn")
    return NormLeNet(group_norm, in_channels)

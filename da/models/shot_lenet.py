"""The LeNet of SHOT's digit code, for SHOT's digits protocol (``configs/shot_digits``).

Liang, Hu and Feng, "Do We Really Need to Access the Source Data? Source Hypothesis Transfer for
Unsupervised Domain Adaptation", ICML 2020; github.com/tim-learn/SHOT, ``digit/network.py``:
``LeNetBase`` (conv 5x5 20 -> max-pool -> ReLU -> conv 5x5 50 -> dropout2d 0.5 -> max-pool -> ReLU,
800 features) then ``feat_bottleneck(type="bn")``: linear 800 -> 256, batch norm, dropout 0.5, and
no ReLU (unlike our ``model.bottleneck``). Its classifier is ``feat_classifier(type="wn")``, a
weight-normalised linear layer: ``model.head: weight_norm`` (``da.models.head``). The bottleneck is
initialised as SHOT's ``init_weights`` does: Xavier-normal weights and zero biases for the linear
layer, batch-norm weights N(1, 0.02) and zero biases; the convolutions keep PyTorch's defaults, as
SHOT's ``LeNetBase`` (never passed to ``init_weights``) does.
"""
from __future__ import annotations

from torch import nn

from da.errors import DAError
from da.models.backbone_entry import register_backbone
from da.models.backbones import Blocks, lenet_convs
from da.models.pretrained import DIGITS

BOTTLENECK = 256


class ShotLeNet(nn.Sequential):
    """SHOT's ``LeNetBase`` + ``feat_bottleneck(type="bn")``: 28x28 digits -> 256 features."""

    BLOCKS = {"conv1": slice(0, 3), "conv2": slice(3, 8), "bottleneck": slice(8, 11)}

    def __init__(self, in_channels: int = 1, bottleneck: int = BOTTLENECK) -> None:
        super().__init__(
            *lenet_convs(in_channels),
            nn.Flatten(),
            nn.Linear(50 * 4 * 4, bottleneck),
            nn.BatchNorm1d(bottleneck),
            nn.Dropout(p=0.5),
        )
        nn.init.xavier_normal_(self[8].weight)
        nn.init.zeros_(self[8].bias)
        nn.init.normal_(self[9].weight, 1.0, 0.02)
        nn.init.zeros_(self[9].bias)
        self.out_features = bottleneck

    def blocks(self) -> Blocks:
        """conv1, conv2, bottleneck: views onto this network's layers (parameters shared)."""
        return [(name, nn.Sequential(*list(self)[part])) for name, part in self.BLOCKS.items()]


@register_backbone("lenet_shot", pretrained_cfg=DIGITS, block_names=tuple(ShotLeNet.BLOCKS), out_features=BOTTLENECK)
def lenet_shot(pretrained: bool = False, in_channels: int = 1) -> ShotLeNet:
    """SHOT's digit LeNet with its 256-d batch-norm bottleneck (Liang et al. 2020); pair it with model.head: weight_norm."""
    if pretrained:
        raise DAError("backbone lenet_shot has no ImageNet weights; set model.pretrained: false and use the pretrain stage")
    return ShotLeNet(in_channels)

"""Feature extractors: the LeNet of the digits literature and torchvision ResNets.

Every backbone maps (N, C, H, W) images to (N, out_features) features and exposes
``out_features``; ``pretrained=True`` asks for ImageNet weights where they exist.

Backbones also name their blocks, bottom to top (``blocks()``; the registered entry's
``block_names`` lets a config be checked without building the network): the units that fine-tuning
strategies freeze, unfreeze and give their own learning rate (``train.lr_mults``, ``train.unfreeze``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from da.errors import DAError
from da.models.backbone_entry import register_backbone
from da.models.pretrained import DIGITS, IMAGENET

#: Ordered (name, module) pairs, bottom (input side) to top (features).
Blocks = list[tuple[str, nn.Module]]


def lenet_convs(in_channels: int = 1) -> list[nn.Module]:
    """LeNet's two convolution blocks: conv 5x5 (20) + pool + relu, conv 5x5 (50) + dropout + pool + relu
    (800 features at 28x28); SHOT's ``LeNetBase`` is the same (``da.models.shot_lenet``)."""
    return [nn.Conv2d(in_channels, 20, kernel_size=5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(20, 50, kernel_size=5), nn.Dropout2d(p=0.5), nn.MaxPool2d(2), nn.ReLU()]


class LeNet(nn.Sequential):
    """The 20-50-500 LeNet used for digits adaptation (LeCun et al. 1998; as in ADDA and TLlib)."""

    #: conv1: conv 5x5 (20) + pool + relu; conv2: conv 5x5 (50) + dropout + pool + relu; fc: 800 -> 500.
    BLOCKS = {"conv1": slice(0, 3), "conv2": slice(3, 7), "fc": slice(7, 11)}

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__(
            *lenet_convs(in_channels),
            nn.Flatten(),
            nn.Linear(50 * 4 * 4, 500),
            nn.ReLU(),
            nn.Dropout(p=0.5),
        )
        self.out_features = 500

    def blocks(self) -> Blocks:
        """conv1, conv2, fc: views onto this network's layers (parameters shared, keys unchanged)."""
        return [(name, nn.Sequential(*list(self)[part])) for name, part in self.BLOCKS.items()]


@register_backbone("lenet", pretrained_cfg=DIGITS, block_names=tuple(LeNet.BLOCKS), out_features=500,
                   batch_norm=False)  # no batch-norm layer: train.batch_norm: per_domain needs model.bottleneck's
def lenet(pretrained: bool = False, in_channels: int = 1) -> LeNet:
    """LeNet 20-50-500 for 28x28 digits; pretrain it on the source with the ``pretrain`` stage."""
    if pretrained:
        raise DAError("backbone lenet has no ImageNet weights; set model.pretrained: false and use the pretrain stage")
    return LeNet(in_channels)


class TorchvisionFeatures(nn.Module):
    """A torchvision classifier with its last layer removed; grey images are repeated to 3 channels."""

    #: A ResNet's blocks: the stem (conv1, bn1, relu, maxpool) and its four stages.
    BLOCKS = {"stem": ("conv1", "bn1", "relu", "maxpool"), "layer1": ("layer1",), "layer2": ("layer2",),
              "layer3": ("layer3",), "layer4": ("layer4",)}

    def __init__(self, net: nn.Module, out_features: int) -> None:
        super().__init__()
        net.fc = nn.Identity()
        self.net = net
        self.out_features = out_features

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x)

    def blocks(self) -> Blocks:
        """stem, layer1 ... layer4 (global pooling has no parameters and goes with layer4)."""
        return [(name, nn.Sequential(*(getattr(self.net, part) for part in parts)))
                for name, parts in self.BLOCKS.items()]


def _resnet(name: str, pretrained: bool) -> TorchvisionFeatures:
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT if pretrained else None
    try:
        net = torchvision.models.get_model(name, weights=weights)
    except Exception as exc:  # URLError / OSError when offline, RuntimeError on a corrupt file
        raise DAError(
            f"ImageNet weights for {name} are not in torch's cache ({torch.hub.get_dir()}/checkpoints) "
            f"and could not be downloaded ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"copy {weights.url.rsplit('/', 1)[-1]} there, or set model.weights: PATH to a local copy "
            f"(and model.pretrained: false)"
        ) from None
    return TorchvisionFeatures(net, net.fc.in_features)


#: What the torchvision ResNets' entries share: ImageNet's input, batch norm, the stem and four stages.
RESNET_ENTRY = {"pretrained_cfg": IMAGENET, "batch_norm": True, "block_names": tuple(TorchvisionFeatures.BLOCKS),
                "library": "torchvision"}


@register_backbone("resnet18", **RESNET_ENTRY, out_features=512, weights_tag="IMAGENET1K_V1")
def resnet18(pretrained: bool = False, in_channels: int = 1) -> TorchvisionFeatures:
    """torchvision ResNet-18 (He et al. 2016), 512-d features; ImageNet weights when pretrained."""
    return _resnet("resnet18", pretrained)


@register_backbone("resnet50", **RESNET_ENTRY, out_features=2048, weights_tag="IMAGENET1K_V2")
def resnet50(pretrained: bool = False, in_channels: int = 1) -> TorchvisionFeatures:
    """torchvision ResNet-50 (He et al. 2016), 2048-d features; ImageNet weights when pretrained."""
    return _resnet("resnet50", pretrained)


class WithBottleneck(nn.Module):
    """A backbone followed by a bottleneck: linear -> batch norm -> ReLU to ``dim`` features.

    The bottleneck of Transfer-Learning-Library's ``ImageClassifier`` (256-d on digits), after the
    extra adaptation layer of DDC (Tzeng et al. 2014) and DANN (Ganin et al. 2016): adapters align
    its output, and its batch norm, fed source and target in one forward, normalises features of
    both domains together. It is the top block for fine-tuning strategies.
    """

    def __init__(self, backbone: nn.Module, dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.bottleneck = nn.Sequential(nn.Linear(backbone.out_features, dim), nn.BatchNorm1d(dim), nn.ReLU())
        self.out_features = dim

    def forward(self, x: Tensor) -> Tensor:
        return self.bottleneck(self.backbone(x))

    def blocks(self) -> Blocks:
        return [*self.backbone.blocks(), ("bottleneck", self.bottleneck)]


class BlockOutputs(nn.Module):
    """The outputs of some of an extractor's blocks, each flattened, side by side: (N, total width).

    One forward through the blocks from the bottom up to the highest one named, with the
    extractor's own modules (parameters shared). ``["conv2", "bottleneck"]`` on LeNet gives the
    conv2 maps (800) and the top features next to each other, a "hypercolumn" of generic and
    task-specific features (Hariharan et al., CVPR 2015).
    """

    def __init__(self, extractor: nn.Module, names: list[str]) -> None:
        super().__init__()
        blocks = extractor.blocks() if hasattr(extractor, "blocks") else []
        known = [name for name, _ in blocks]
        for name in names:
            if name not in known:
                listed = f"its blocks (bottom to top) are {', '.join(known)}" if known else "it names no blocks"
                raise DAError(f"the extractor has no block {name!r}: {listed}")
        self.keep = sorted({known.index(name) for name in names})
        self.blocks = nn.ModuleList(module for _, module in blocks[: self.keep[-1] + 1])

    def forward(self, x: Tensor) -> Tensor:
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.keep:
                outputs.append(x.flatten(1))
        return torch.cat(outputs, 1)

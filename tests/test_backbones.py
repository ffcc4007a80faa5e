"""Backbones: output widths, grey input for torchvision ResNets, and the offline ImageNet-weights error."""
from __future__ import annotations

import pytest
import torch

import da.models  # noqa: F401
from da.errors import DAError
from da.registry import BACKBONES


@pytest.mark.parametrize("name,width", [("lenet", 500), ("resnet18", 512)])
def test_backbones_map_grey_digits_to_features_of_their_width(name, width):
    net = BACKBONES.get(name)(pretrained=False)
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, width) and net.out_features == width


def test_imagenet_weights_offline_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty weights cache
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    with pytest.raises(DAError) as info:
        BACKBONES.get("resnet18")(pretrained=True)
    message = str(info.value)
    assert "ImageNet weights for resnet18" in message and "model.pretrained: false" in message
    assert str(tmp_path / "torch_home") in message


def test_lenet_has_no_imagenet_weights():
    with pytest.raises(DAError, match="no ImageNet weights"):
        BACKBONES.get("lenet")(pretrained=True)

"""Backbones: output widths, grey input for torchvision ResNets, and the offline ImageNet-weights error."""
from __future__ import annotations

import pytest
import torch

import da.models  # noqa: F401
from conftest import one_line_error, tiny_config
from da.errors import DAError
from da.registry import BACKBONES


@pytest.mark.parametrize("name,width", [("lenet", 500), ("resnet18", 512)])
def test_backbones_map_grey_digits_to_features_of_their_width(name, width):
    net = BACKBONES.get(name).build(pretrained=False)
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, width) and net.out_features == width


def test_imagenet_weights_offline_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty weights cache
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    with pytest.raises(DAError) as info:
        BACKBONES.get("resnet18").build(pretrained=True)
    message = str(info.value)
    assert "ImageNet weights for resnet18" in message and "model.pretrained: false" in message
    assert str(tmp_path / "torch_home") in message


def test_lenet_has_no_imagenet_weights():
    with pytest.raises(DAError, match="no ImageNet weights"):
        BACKBONES.get("lenet").build(pretrained=True)


def test_a_bottleneck_narrows_the_features_and_is_the_top_block(write_config, cli, tmp_path):
    from da.models.backbones import WithBottleneck

    net = WithBottleneck(BACKBONES.get("lenet").build(), 64)
    assert net(torch.randn(4, 1, 28, 28)).shape == (4, 64) and net.out_features == 64
    names = [name for name, _ in net.blocks()]
    assert tuple(names) == BACKBONES.get("lenet").blocks(64) == ("conv1", "conv2", "fc", "bottleneck")
    ids = [id(p) for _, module in net.blocks() for p in module.parameters()]
    assert sorted(ids) == sorted(id(p) for p in net.parameters())
    # Batch norm over the batch: in training mode each bottleneck unit is centred before the ReLU.
    pre = net.bottleneck[1](net.bottleneck[0](net.backbone(torch.randn(32, 1, 28, 28))))
    assert torch.allclose(pre.mean(0), torch.zeros(64), atol=1e-5)
    # A run trains through it, with its own learning rate if asked; a width of 0 is an error.
    cfg = tiny_config(model={"bottleneck": 8}, train={"lr_mults": {"bottleneck": 2}})
    code, _, err = cli("train", "-c", write_config(cfg), "--out", str(tmp_path / "run"), "-q")
    assert code == 0, err
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["model"]["extractor"]["bottleneck.0.weight"].shape[0] == 8
    code, _, err = cli("train", "-c", write_config(tiny_config(model={"bottleneck": 0})), "--dry-run")
    assert code == 2 and "model.bottleneck must be positive, got 0" in one_line_error(err)


def test_block_outputs_are_the_named_blocks_features_side_by_side_with_shared_weights():
    from da.models.backbones import BlockOutputs, WithBottleneck

    net = WithBottleneck(BACKBONES.get("lenet").build(), 16).eval()
    x = torch.randn(3, 1, 28, 28)
    conv2_of = torch.nn.Sequential(*list(net.backbone)[:7])
    with torch.no_grad():
        conv2 = BlockOutputs(net, ["conv2"])(x)
        assert torch.equal(conv2, conv2_of(x).flatten(1)) and conv2.shape == (3, 800)
        assert torch.equal(BlockOutputs(net, ["bottleneck"])(x), net(x))
        both = BlockOutputs(net, ["bottleneck", "conv2"])(x)  # bottom to top, whatever the order asked
        assert torch.equal(both, torch.cat([conv2, net(x)], 1))
    assert BlockOutputs(net, ["conv1"]).blocks[0][0] is net.backbone[0]
    with pytest.raises(DAError, match="no block 'conv3': its blocks .* are conv1, conv2, fc, bottleneck"):
        BlockOutputs(net, ["conv2", "conv3"])

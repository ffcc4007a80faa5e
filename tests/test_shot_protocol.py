"""SHOT's digits protocol: its USPS division (rebuilt), its LeNet and its weight-normalised classifier.

The network oracle is SHOT's own code (github.com/tim-learn/SHOT, ``digit/network.py``: ``LeNetBase``
and ``feat_bottleneck(type="bn")``), copied below; our ``lenet_shot`` must compute what it computes.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from da.models.head import weight_norm_head
from da.models.shot_lenet import ShotLeNet
from conftest import needs_data, real_data_root


class LeNetBase(nn.Module):  # SHOT digit/network.py
    def __init__(self):
        super(LeNetBase, self).__init__()
        self.conv_params = nn.Sequential(
                nn.Conv2d(1, 20, kernel_size=5),
                nn.MaxPool2d(2),
                nn.ReLU(),
                nn.Conv2d(20, 50, kernel_size=5),
                nn.Dropout2d(p=0.5),
                nn.MaxPool2d(2),
                nn.ReLU(),
                )
        self.in_features = 50*4*4

    def forward(self, x):
        x = self.conv_params(x)
        x = x.view(x.size(0), -1)
        return x


class feat_bottleneck(nn.Module):  # SHOT digit/network.py, type="bn"
    def __init__(self, feature_dim, bottleneck_dim=256, type="ori"):
        super(feat_bottleneck, self).__init__()
        self.bn = nn.BatchNorm1d(bottleneck_dim, affine=True)
        self.dropout = nn.Dropout(p=0.5)
        self.bottleneck = nn.Linear(feature_dim, bottleneck_dim)
        self.type = type

    def forward(self, x):
        x = self.bottleneck(x)
        if self.type == "bn":
            x = self.bn(x)
            x = self.dropout(x)
        return x


def test_lenet_shot_computes_what_shots_lenet_and_bottleneck_compute():
    torch.manual_seed(0)
    ours = ShotLeNet()
    net_f, net_b = LeNetBase(), feat_bottleneck(800, 256, "bn")
    theirs = [*net_f.conv_params, net_b.bottleneck, net_b.bn]
    mine = [m for m in ours if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.MaxPool2d, nn.ReLU, nn.Dropout2d))]
    assert [type(m) for m in mine] == [type(m) for m in theirs]
    for a, b in zip(mine, theirs):
        b.load_state_dict(a.state_dict())
    ours.eval(), net_f.eval(), net_b.eval()
    for module in ours:  # BN's running statistics, not only its affine weights
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            net_b.bn.load_state_dict(module.state_dict())
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    assert torch.allclose(ours(x), net_b(net_f(x)), atol=1e-6)
    assert ours.out_features == 256 and [name for name, _ in ours.blocks()] == ["conv1", "conv2", "bottleneck"]


def test_the_weight_norm_head_is_g_times_v_over_its_norm_per_class():
    head = weight_norm_head(256, 10)
    g = head.parametrizations.weight.original0
    v = head.parametrizations.weight.original1
    assert torch.allclose(head.weight, g * v / v.norm(dim=1, keepdim=True))
    assert torch.allclose(g.squeeze(1), v.norm(dim=1)) and torch.equal(head.bias, torch.zeros(10))
    with torch.no_grad():
        g.mul_(3.0)
    assert torch.allclose(head.weight.norm(dim=1), 3.0 * v.norm(dim=1))


@needs_data
def test_usps_shot_divides_all_9298_usps_images_into_shots_sizes_reproducibly():
    from da.registry import DATASETS

    entry, root = DATASETS.get("usps_shot"), Path(real_data_root())
    a, b = entry.load(root, "target"), entry.load(root, "target")
    other = entry.load(root, "target", kwargs={"seed": 1})
    official = DATASETS.get("usps").load(root, "target")
    assert (len(a.train), len(a.test)) == (7438, 1860)
    assert torch.equal(a.train.x, b.train.x) and not torch.equal(a.train.x, other.train.x)
    pooled = torch.cat([a.train.x, a.test.x]).flatten(1)
    every = torch.cat([official.train.x, official.test.x]).flatten(1)
    key = lambda x: sorted(map(tuple, x.mul(1000).round().int().tolist()))
    assert key(pooled) == key(every), "the division holds every official image once"
    assert torch.equal(torch.cat([a.train.y, a.test.y]).bincount(), torch.cat([official.train.y, official.test.y]).bincount())


@pytest.mark.parametrize("bad", [{"head_dropout": 0.5}])
def test_a_weight_norm_head_with_dropout_is_one_line(cli, write_config, bad):
    from conftest import one_line_error, tiny_config

    path = write_config(tiny_config(model={"head": "weight_norm", **bad}))
    code, _, err = cli("train", "-c", path, "--dry-run")
    assert code == 2 and "weight_norm" in one_line_error(err)


def test_shot_with_shots_lenet_and_weight_norm_head_trains_and_resumes_exactly(tmp_path, monkeypatch):
    from conftest import tiny_config
    from methods_helpers import resumed_equals_uninterrupted

    config = {**tiny_config(model={"backbone": "lenet_shot", "head": "weight_norm"}),
              "adapter": {"name": "source_only"},
              "stages": ["pretrain", {"name": "shot", "epochs": 1, "batch_size": 16, "max_steps": 4}]}
    resumed_equals_uninterrupted(config, tmp_path, monkeypatch, "shot", 2)

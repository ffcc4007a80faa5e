"""MIC (Hoyer et al., CVPR 2023) as the self_train stage's ``mask_ratio``: patch masking, and the
masked view learning the EMA teacher's pseudo-labels weighted by its confidence."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from da.adapters.source_only import SourceOnly
from da.data.patch_mask import PatchMask
from da.stages.self_train import SelfTrain
from da.train.model import Model
from conftest import one_line_error, tiny_config


@pytest.mark.parametrize("ratio,block", [(0.7, 7), (0.5, 4), (0.3, 14)])
def test_the_mask_hides_the_stated_share_of_whole_patches(ratio, block):
    x = torch.rand(2000, 1, 28, 28) + 0.5  # no pixel is 0 before masking
    masked = PatchMask(ratio, block, torch.Generator().manual_seed(0))(x)
    hidden = masked == 0
    assert torch.equal(masked[~hidden], x[~hidden]), "a kept pixel is unchanged"
    grid = hidden.view(2000, 28 // block, block, 28 // block, block)
    per_patch = grid.float().mean(dim=(2, 4))
    assert torch.all((per_patch == 0) | (per_patch == 1)), "a patch is hidden whole or kept whole"
    assert abs(per_patch.mean().item() - ratio) < 0.01


def test_ratio_zero_hides_nothing():
    x = torch.rand(8, 1, 28, 28)
    assert torch.equal(PatchMask(0.0, 7, torch.Generator().manual_seed(0))(x), x)


def test_masked_consistency_is_mics_confidence_weighted_cross_entropy():
    torch.manual_seed(0)
    model = Model(nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 8)), nn.Linear(8, 10), SourceOnly())
    stage = SelfTrain(mask_ratio=0.5, mask_block=7)
    stage._mask = PatchMask(0.5, 7, torch.Generator().manual_seed(3))
    x = torch.rand(16, 1, 28, 28)
    pseudo, confidence = torch.randint(0, 10, (16,)), torch.rand(16)
    got = stage.masked_consistency(model, x, pseudo, confidence)
    masked = PatchMask(0.5, 7, torch.Generator().manual_seed(3))(x)
    # lhoyer/MIC cls/examples/cdan_mcc_sdat_masking.py, pseudo_label_weight == 'prob'
    ce = F.cross_entropy(model.head(model.extractor(masked)), pseudo, reduction='none')
    assert torch.allclose(got, torch.mean(confidence * ce))
    stage.mask_confidence = False
    stage._mask = PatchMask(0.5, 7, torch.Generator().manual_seed(3))
    assert torch.allclose(stage.masked_consistency(model, x, pseudo, confidence), ce.mean())


MIC = {**tiny_config(), "adapter": {"name": "source_only"},
       "stages": ["pretrain", {"name": "self_train", "steps": 6, "batch_size": 16, "threshold": 0.5,
                               "mask_ratio": 0.7, "mask_block": 7}]}


def test_a_mic_run_resumes_exactly(tmp_path, monkeypatch):
    from methods_helpers import resumed_equals_uninterrupted

    resumed_equals_uninterrupted(MIC, tmp_path, monkeypatch, "self_train", 3)


@pytest.mark.parametrize("setting,value", [("mask_ratio", 1.0), ("mask_ratio", -0.1), ("mask_block", 0)])
def test_a_bad_mask_setting_is_one_line_before_a_run_folder(cli, write_config, setting, value):
    stage = {**MIC["stages"][1], setting: value}
    path = write_config({**MIC, "stages": ["pretrain", stage]})
    code, _, err = cli("train", "-c", path, "--out", path.parent / "run")
    assert code == 2 and setting in one_line_error(err)
    assert not (path.parent / "run").exists()

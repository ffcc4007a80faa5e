"""SHOT (Liang et al. 2020): clustering pseudo-labels, information maximisation, and the source-free stage."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from conftest import one_line_error, tiny_config
from da.stages.shot_labels import cluster_pseudo_labels, information_maximisation


def test_clustering_fixes_labels_the_head_gets_wrong_inside_tight_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(3, 8) * 5
    y = torch.arange(3).repeat_interleave(20)
    features = centres[y] + 0.1 * torch.randn(60, 8, generator=g)
    probs = F.one_hot(y, 3).float() * 0.8 + 0.2 / 3
    wrong = torch.tensor([0, 21, 45])  # the head is confidently wrong on three images
    probs[wrong] = torch.roll(probs[wrong], 1, dims=1)
    labels = cluster_pseudo_labels(features, probs)
    assert torch.equal(labels, y)


def test_a_class_no_image_is_weighted_to_is_never_assigned():
    features = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))
    probs = torch.zeros(10, 5)
    probs[:, :2] = 0.5  # classes 2-4 carry no weight: no centroid
    labels = cluster_pseudo_labels(features, probs)
    assert set(labels.tolist()) <= {0, 1}


def test_information_maximisation_prefers_confident_and_diverse_predictions():
    confident_diverse = torch.eye(4) * 20
    confident_collapsed = torch.zeros(4, 4)
    confident_collapsed[:, 0] = 20
    uncertain = torch.zeros(4, 4)
    ent_d, div_d = information_maximisation(confident_diverse)
    ent_c, div_c = information_maximisation(confident_collapsed)
    ent_u, _ = information_maximisation(uncertain)
    assert ent_d < 1e-3 and ent_c < 1e-3 and ent_u > 1.3
    assert div_d > 1.3 and div_c < 1e-3


SHOT = {**tiny_config(), "adapter": {"name": "source_only"},
        "stages": ["pretrain", {"name": "shot", "epochs": 2, "batch_size": 32}]}


class NoSourceAfterPretraining:
    """A source train split that refuses to be read: SHOT must not touch it."""

    def __init__(self, split):
        self.split = split

    def __len__(self):
        return len(self.split)

    def __getattr__(self, name):
        raise AssertionError(f"source train images read after source training ({name})")


def test_shot_reads_no_source_image_and_keeps_the_head(tmp_path, monkeypatch):
    from da.checkpoint import load_checkpoint
    from da.composition import build_config, train
    from da.stages.pretrain import Pretrain

    heads = {}
    real_end = Pretrain.end

    def end(self, ctx, last):
        real_end(self, ctx, last)
        heads["source"] = {k: v.clone() for k, v in ctx.run.model.head.state_dict().items()}
        ctx.run.domains.source_train = NoSourceAfterPretraining(ctx.run.domains.source_train)

    monkeypatch.setattr(Pretrain, "end", end)
    (tmp_path / "run").mkdir()
    summary = train(build_config(SHOT), tmp_path / "run", show_progress=False)
    after = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    for key, value in heads["source"].items():
        assert torch.equal(after["head"][key], value), "the source head must stay frozen"
    assert "pretrain_target_test_acc" in summary and "target_test_acc" in summary


def test_shot_resumes_exactly_mid_epoch(tmp_path, monkeypatch):
    from methods_helpers import resumed_equals_uninterrupted

    resumed_equals_uninterrupted(SHOT, tmp_path, monkeypatch, "shot", 10)  # 8 steps an epoch: after a refresh


def test_source_free_without_a_source_model_is_one_line(cli, write_config):
    path = write_config({**SHOT, "pretrain": {"steps": 0}, "stages": [{"name": "shot"}]})
    code, _, err = cli("train", "-c", path, "--dry-run")
    assert code == 2
    assert "shot" in one_line_error(err)


def test_source_free_from_a_received_checkpoint(tmp_path):
    """The documented source-free mode: a model trained elsewhere, SHOT on unlabelled target images."""
    from da.composition import build_config, train

    (tmp_path / "provider").mkdir()
    provider = {k: v for k, v in SHOT.items() if k != "stages"}  # source-only training, no adaptation step
    train(build_config({**provider, "train": {**provider["train"], "steps": 0}}), tmp_path / "provider",
          show_progress=False)
    received = {**SHOT, "pretrain": {"checkpoint": str(tmp_path / "provider" / "checkpoint.pt"), "load": "all"},
                "stages": ["pretrain", {"name": "shot", "epochs": 1, "batch_size": 32}]}
    (tmp_path / "user").mkdir()
    summary = train(build_config(received), tmp_path / "user", show_progress=False)
    assert "pretrain_target_test_acc" in summary and summary["history"], summary.keys()

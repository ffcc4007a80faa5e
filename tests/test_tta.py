"""Test-time adaptation's core: the stream (orders, sequences, rounds), scoring before the update,
resets, exact resume, what ``tent`` and ``norm`` change, and the one-line refusals."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from conftest import one_line_error, results, stop_at, tiny_config
from da.composition import build_config, train
from da.data import DomainData, Split, register_dataset
from da.data.stream import stream_plan
from da.errors import DAError, Interrupted
from da.models.lenet_norm import lenet_bn
from da.models import test_time_norm
from da.registry import DATASETS
from da.stages.tent import Tent


def tta_config(stage: dict, **sections) -> dict:
    """A synthetic run: a batch-norm LeNet pretrained briefly, then the test-time ``stage``."""
    cfg = tiny_config(model={"backbone": "lenet_bn", "bottleneck": 32}, pretrain={"steps": 20, "batch_size": 16},
                      train={"steps": 0, "log_every": 1}, stages=["pretrain", stage])
    cfg["adapter"] = {"name": "source_only"}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


def run(tmp_path, cfg: dict, name: str = "run") -> dict:
    (tmp_path / name).mkdir()
    return train(build_config(cfg), tmp_path / name, show_progress=False)


# ---------------------------------------------------------------- the stream


def label_runs(labels: torch.Tensor) -> int:
    return 1 + int((labels[1:] != labels[:-1]).sum())


def test_a_class_correlated_stream_has_long_label_runs_at_small_alpha_and_short_ones_at_large():
    y = torch.arange(1000) % 10
    part = torch.zeros(1000, dtype=torch.long)
    small = stream_plan(y, part, 1, 64, "class_correlated", alpha=1e-3, seed=0)
    large = stream_plan(y, part, 1, 64, "class_correlated", alpha=1e3, seed=0)
    shuffled = stream_plan(y, part, 1, 64, "shuffled", seed=0)
    # alpha -> 0: each class falls in one slot, one run per class; alpha -> inf: every class split
    # evenly over the 10 slots, one run per (slot, class); shuffled: about 9 changes in 10 images.
    assert 10 <= label_runs(y[small.index]) <= 12  # a class rarely splits between two slots
    assert 90 <= label_runs(y[large.index]) <= 100
    assert label_runs(y[shuffled.index]) > 800
    for plan in (small, large, shuffled):
        assert torch.equal(plan.index.sort().values, torch.arange(1000))  # each image once


def test_a_stream_is_seeded_and_its_batches_never_straddle_two_domains():
    y, part = torch.arange(100) % 4, (torch.arange(100) >= 60).long()
    a = stream_plan(y, part, 2, 16, "shuffled", seed=3)
    assert torch.equal(a.index, stream_plan(y, part, 2, 16, "shuffled", seed=3).index)
    assert not torch.equal(a.index, stream_plan(y, part, 2, 16, "shuffled", seed=4).index)
    assert a.starts == [0, 16, 32, 48, 60, 76, 92, 100]
    for i in range(a.batches):
        _, domains, _ = a.batch(i)
        assert len(domains.unique()) == 1
    assert a.domain_starts() == [True, False, False, False, True, False, False]


def test_gradual_goes_up_and_back_down_seeing_each_image_once_and_mixed_interleaves():
    y, part = torch.arange(90) % 3, torch.arange(90) // 30  # three domains of 30
    gradual = stream_plan(y, part, 3, 10, "sequential", sequence="gradual", seed=0)
    order = [int(d) for d in gradual.domain[gradual.block.diff(prepend=torch.tensor([-1])) != 0]]
    assert order == [0, 1, 2, 1, 0]
    assert torch.equal(gradual.index.sort().values, torch.arange(90))
    mixed = stream_plan(y, part, 3, 10, "shuffled", sequence="mixed", seed=0)
    assert len(mixed.domain[:30].unique()) == 3 and mixed.domain_starts().count(True) == 1


def test_rounds_walk_the_sequence_again_in_a_new_order():
    y, part = torch.arange(40) % 4, torch.zeros(40, dtype=torch.long)
    plan = stream_plan(y, part, 1, 8, "shuffled", seed=0, rounds=2)
    first, second = plan.index[:40], plan.index[40:]
    assert torch.equal(first.sort().values, second.sort().values) and not torch.equal(first, second)
    assert [plan.batch(i)[2] for i in range(plan.batches)] == [0] * 5 + [1] * 5


# ---------------------------------------------------------------- normalisation at test time


def test_test_time_batch_norm_normalises_with_the_batch_and_mixes_the_source_by_its_prior():
    torch.manual_seed(0)
    net = lenet_bn().eval()
    net.train()(torch.randn(64, 1, 28, 28) * 2 + 1)  # source statistics away from 0 / 1
    net.eval()
    source = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(16, 1, 28, 28)
    reference = lenet_bn()
    reference.load_state_dict(source)
    reference.train()
    for m in reference.modules():
        if isinstance(m, nn.Dropout2d | nn.Dropout):
            m.p = 0.0
    assert test_time_norm.use_test_statistics(net, prior=0.0) == 3
    assert torch.allclose(net(x), reference(x), atol=1e-5)  # train-mode batch norm on the batch
    assert all(torch.equal(net.state_dict()[k], v) for k, v in source.items())  # source statistics untouched
    test_time_norm.use_test_statistics(net, prior=1e9)
    reference.load_state_dict(source)
    reference.eval()
    assert torch.allclose(net(x), reference(x), atol=1e-4)  # an overwhelming prior: the source's statistics
    assert isinstance(net[1], test_time_norm.TestTimeBatchNorm) and net[1].prior == 1e9


# ---------------------------------------------------------------- runs


def test_tent_trains_only_the_normalisation_layers_affine_parameters_and_scores_every_image(tmp_path):
    summary = run(tmp_path, tta_config({"name": "tent", "batch_size": 16, "lr": 0.05}))
    assert summary["online_images"] == 128 and summary["online_acc_by_domain"] == {"synthetic_target": summary["online_acc"]}
    assert json.loads((tmp_path / "run" / "stream.json").read_text())["batches"] == 8
    run(tmp_path, tta_config({"name": "norm", "batch_size": 16}), "norm")  # same seed: the same source model, unchanged
    after = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]
    source = torch.load(tmp_path / "norm" / "checkpoint.pt", weights_only=False)["model"]
    changed = {f"{part}.{k}" for part in after for k, v in after[part].items() if not torch.equal(v, source[part][k])}
    norms = [f"extractor.backbone.{i}" for i in (1, 5, 11)] + ["extractor.bottleneck.1"]  # lenet_bn's and the bottleneck's
    assert changed == {f"{layer}.{p}" for layer in norms for p in ("weight", "bias")}  # not their statistics, nor any other weight


def test_a_prediction_is_scored_before_the_update_that_uses_its_batch(tmp_path):
    whole = {"batch_size": 128, "order": "sequential"}  # the whole stream in one batch
    weak = {"steps": 1, "lr": 0.001}  # a poor source model: its predictions are not all right
    tent = run(tmp_path, tta_config({"name": "tent", "lr": 1.0, **whole}, pretrain=weak), "tent")
    norm = run(tmp_path, tta_config({"name": "norm", **whole}, pretrain=weak), "norm")
    assert tent["online_acc"] == norm["online_acc"]  # scored as norm predicts: before tent's one update
    assert tent["online_acc"] < 1.0
    weights = [torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)["model"]["head"]["weight"]
               for name in ("tent", "norm")]
    affine = [torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)["model"]["extractor"]["backbone.1.weight"]
              for name in ("tent", "norm")]
    assert torch.equal(*weights) and not torch.equal(*affine)  # and the update did change the model


def test_episodic_tent_predicts_every_batch_from_the_source_model(tmp_path):
    stream = {"batch_size": 16, "order": "shuffled"}
    episodic = run(tmp_path, tta_config({"name": "tent", "lr": 0.5, "reset": "episodic", **stream}), "episodic")
    never = run(tmp_path, tta_config({"name": "tent", "lr": 0.5, **stream}), "never")
    norm = run(tmp_path, tta_config({"name": "norm", **stream}), "norm")
    assert episodic["online_acc"] == norm["online_acc"] != never["online_acc"]


def test_a_reset_restores_the_source_weights_and_the_optimizer_bitwise():
    torch.manual_seed(0)
    part = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    model = SimpleNamespace(parts=lambda: {"extractor": part})
    optimizer = torch.optim.Adam(part.parameters(), lr=0.1)
    stage = Tent(reset="episodic")
    ctx = SimpleNamespace(run=SimpleNamespace(model=model), optimizers={"main": optimizer})
    weights = {k: v.clone() for k, v in part.state_dict().items()}
    stage.source = {"model": {"extractor": {k: v.clone() for k, v in weights.items()}},
                    "optimizers": {"main": optimizer.state_dict()}, "method": {}}
    for _ in range(3):
        part(torch.randn(8, 4)).pow(2).mean().backward()
        optimizer.step()
    stage.restore(ctx)
    assert all(torch.equal(part.state_dict()[k], v) for k, v in weights.items())
    assert optimizer.state_dict()["state"] == {}
    fresh = torch.optim.Adam(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).parameters(), lr=0.1)
    assert optimizer.state_dict()["param_groups"] == fresh.state_dict()["param_groups"]


def test_a_stream_stopped_mid_way_resumes_to_the_same_online_accuracy(tmp_path, monkeypatch):
    cfg = build_config(tta_config({"name": "tent", "batch_size": 16, "lr": 0.05}, train={"checkpoint_every": 3}))
    (tmp_path / "whole").mkdir()
    whole = results(train(cfg, tmp_path / "whole", show_progress=False))
    (tmp_path / "stopped").mkdir()
    stop_at(monkeypatch, 5, stage="tent")
    with pytest.raises(Interrupted):
        train(cfg, tmp_path / "stopped", show_progress=False)
    monkeypatch.undo()
    resumed = results(train(cfg, tmp_path / "stopped", resume=True, show_progress=False))
    assert resumed["online_acc"] == whole["online_acc"] and resumed["target_test_acc"] == whole["target_test_acc"]


@pytest.fixture
def second_domain(monkeypatch):
    """``synthetic_b``: the synthetic target with a stronger shift, a second domain for a stream."""
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))
    base = DATASETS.get("synthetic")

    @register_dataset("synthetic_b", num_classes=4)
    def synthetic_b(root, download, role):
        d = base.loader(root, download, "target")
        return DomainData("synthetic_b", Split(d.train.x * 0.5, d.train.y), Split(d.test.x * 0.5 - 0.3, d.test.y), 4)


def test_a_list_of_targets_is_one_stream_scored_per_domain_and_round(tmp_path, second_domain):
    cfg = tta_config({"name": "tent", "batch_size": 16, "rounds": 2, "reset": "domain"},
                     data={"target": ["synthetic", "synthetic_b"]})
    summary = run(tmp_path, cfg)
    assert list(summary["online_acc_by_domain"]) == ["synthetic_target", "synthetic_b"]
    assert summary["online_images"] == 2 * 256 and len(summary["online_acc_by_round"]) == 2
    assert summary["target"] == ["synthetic", "synthetic_b"]
    by_domain, rounds = summary["online_acc_by_domain"].values(), summary["online_acc_by_round"]
    assert abs(sum(by_domain) / 2 - summary["online_acc"]) < 1e-6 and abs(sum(rounds) / 2 - summary["online_acc"]) < 1e-6


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("changes, message", [
    ({"stages": ["pretrain", {"name": "tent", "batch_size": 1}]}, "a batch of 1 cannot give the batch-norm layers"),
    ({"stages": [{"name": "tent"}], "pretrain": {"steps": 0}}, "stage 'tent' needs a model trained on the source first"),
    ({"stages": ["pretrain", "norm"], "model": {"backbone": "lenet", "bottleneck": None}}, "has no batch norm"),
    ({"stages": ["pretrain", "tent", "norm"]}, "lists 2 test-time stages"),
    ({"stages": ["pretrain", "adapt"], "data": {"target": ["synthetic", "usps"]}}, "stage 'adapt' adapts to one target"),
    ({"data": {"target": ["synthetic", "synthetic"]}}, "lists a domain twice"),
    ({"data": {"target": []}}, "data.target is an empty list"),
    ({"stages": ["pretrain", {"name": "tent", "reset": "domain", "sequence": "mixed"}]}, "reset: domain needs domains"),
    ({"stages": ["pretrain", {"name": "tent", "order": "sorted"}]}, "must be one of shuffled, class_correlated, sequential"),
])
def test_bad_test_time_configs_get_one_line_before_a_run_folder_exists(changes, message, write_config, cli, tmp_path):
    cfg = tta_config({"name": "tent"})
    for key, value in changes.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    code, _, err = cli("train", "-c", write_config(cfg), "--out", tmp_path / "out")
    assert code == 2 and message in one_line_error(err)
    assert not (tmp_path / "out").exists()


def test_a_stream_of_zero_batches_is_refused_in_one_line():
    empty = SimpleNamespace(target_test=Split(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long)),
                            target_parts=lambda: torch.zeros(0, dtype=torch.long), target_names=("empty",))
    with pytest.raises(DAError, match="has no batch"):
        Tent().check_data(SimpleNamespace(seed=0, data=SimpleNamespace(target="empty")), empty)

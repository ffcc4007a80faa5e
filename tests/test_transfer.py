"""Transfer learning beyond adaptation: few target labels, frozen / discriminative / gradually unfrozen
fine-tuning, early stopping with restore, new tasks on a pretrained extractor. Synthetic data only."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import MNIST_TEST, MNIST_TRAIN, needs_data, one_line_error, real_data_root, stopped_then_resumed, tb_tags, tiny_config
from da.checkpoint import load_checkpoint
from da.composition import build_config, train
from da.config import DataConfig, TrainConfig, UnfreezeConfig
from da.domains import load_domains
from da.evaluate import evaluate_run
from da.finetune import FineTuning
from da.models import linear_head
from da.registry import BACKBONES, DATASETS
from da.train import best_evaluation

SYNTHETIC = {"source": "synthetic", "target": "synthetic", "source_val_size": 64}


def run(tmp_path, name: str, **sections) -> tuple[dict, object]:
    run_dir = tmp_path / name
    run_dir.mkdir()
    return train(build_config(tiny_config(**sections)), run_dir, show_progress=False), run_dir


# ---------------------------------------------------------------- few target labels


def test_k_per_class_draw_is_exact_seeded_nested_and_from_target_train_only():
    cpu = torch.device("cpu")
    d5 = load_domains(DataConfig(**SYNTHETIC, target_labels_per_class=5), cpu)
    raw = DATASETS.get("synthetic").load(None, "target")
    assert torch.bincount(d5.target_labelled.y).tolist() == [5, 5, 5, 5]
    idx = d5.target_labelled_index
    assert torch.equal(d5.target_labelled.x, raw.train.x[idx]) and torch.equal(d5.target_labelled.y, raw.train.y[idx])
    # Never a target test image, and the unlabelled target split still hides every label.
    assert not (d5.target_labelled.x.flatten(1)[:, None] == raw.test.x.flatten(1)[None]).all(-1).any()
    assert bool((d5.target_train.y == -1).all())
    again = load_domains(DataConfig(**SYNTHETIC, target_labels_per_class=5), cpu)
    assert torch.equal(again.target_labelled_index, idx)
    d2 = load_domains(DataConfig(**SYNTHETIC, target_labels_per_class=2), cpu)
    assert set(d2.target_labelled_index.tolist()) < set(idx.tolist())  # nested draws
    other = load_domains(DataConfig(**SYNTHETIC, target_labels_per_class=5, split_seed=1), cpu)
    assert not torch.equal(other.target_labelled_index, idx)
    everything = load_domains(DataConfig(**SYNTHETIC, target_labels_per_class="all"), cpu)
    assert torch.equal(everything.target_labelled.y, raw.train.y)


def test_source_train_size_is_a_seeded_subset_of_the_training_split():
    cpu = torch.device("cpu")
    full = load_domains(DataConfig(**SYNTHETIC), cpu)
    small = load_domains(DataConfig(**SYNTHETIC, source_train_size=50), cpu)
    assert len(small.source_train) == 50 and torch.equal(small.source_val.x, full.source_val.x)
    assert torch.equal(small.source_train.x, full.source_train.x[:50])


def test_target_labels_train_are_recorded_and_logged(tmp_path):
    summary, run_dir = run(tmp_path, "k3", data={"target_labels_per_class": 3})
    record = json.loads((run_dir / "target_labels.json").read_text())
    assert record["count"] == 12 and record["class_counts"] == [3, 3, 3, 3]
    assert summary["target_labels"]["indices"] == record["indices"] and len(set(record["indices"])) == 12
    tags, _ = tb_tags(run_dir)
    assert {"loss/target_labelled", "trainable/extractor", "lr/extractor"} <= tags
    state = load_checkpoint(run_dir / "checkpoint.pt")
    assert state["samplers"]["target_labelled"]["pos"] > 0


def test_fine_tuning_on_target_labels_only_reads_no_source_batch(tmp_path, monkeypatch):
    """source_weight 0 with source_only: plain fine-tuning on the k labelled target images."""
    seen = []
    real = torch.nn.functional.cross_entropy
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", lambda logits, y, *a, **k: seen.append(y) or real(logits, y, *a, **k))
    cfg = tiny_config(data={"target_labels_per_class": 2}, pretrain={"steps": 0}, train={"source_weight": 0.0, "steps": 3})
    cfg["adapter"] = {"name": "source_only"}
    run_dir = tmp_path / "ft"
    run_dir.mkdir()
    train(build_config(cfg), run_dir, show_progress=False)
    labelled = set(json.loads((run_dir / "target_labels.json").read_text())["indices"])
    assert len(seen) == 3 and all(len(y) == 8 for y in seen)  # batch min(16, 2 x 4 classes)
    assert len(labelled) == 8


# ---------------------------------------------------------------- fine-tuning strategies


def test_frozen_blocks_stay_bit_identical_and_leave_the_optimizer(tmp_path):
    pre, pre_dir = run(tmp_path, "pre", pretrain={"steps": 3}, train={"steps": 0})
    before = load_checkpoint(pre_dir / "checkpoint.pt")["model"]["extractor"]
    _, run_dir = run(tmp_path, "frozen", pretrain={"steps": 0, "checkpoint": str(pre_dir / "checkpoint.pt")},
                     train={"lr_mults": {"conv1": 0, "conv2": 0}, "steps": 5})
    state = load_checkpoint(run_dir / "checkpoint.pt")
    after = state["model"]["extractor"]
    for key in ("0.weight", "0.bias", "3.weight", "3.bias"):  # conv1, conv2
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["8.weight"], after["8.weight"])  # fc trains
    groups = state["optimizers"]["main"]["param_groups"]
    assert len(groups) == 3 and [len(g["params"]) for g in groups[:2]] == [2, 2]  # fc, head; then the adapter


def test_frozen_resnet_blocks_keep_their_batch_norm_statistics(tmp_path):
    """A frozen block runs in eval mode: its BN running statistics are not updated either."""
    small = {"model": {"backbone": "resnet18"}, "pretrain": {"steps": 0}}
    _, init_dir = run(tmp_path, "init", **small, train={"steps": 0, "batch_size": 4})
    _, run_dir = run(tmp_path, "frozen", **small, train={"steps": 2, "batch_size": 4, "eval_every": 2,
                                                         "lr_mults": {"stem": 0, "layer1": 0}})
    before = load_checkpoint(init_dir / "checkpoint.pt")["model"]["extractor"]
    after = load_checkpoint(run_dir / "checkpoint.pt")["model"]["extractor"]
    for key in before:
        frozen = key.startswith(("net.conv1.", "net.bn1.", "net.layer1."))
        assert torch.equal(before[key], after[key]) == frozen, key
    assert not torch.equal(before["net.layer2.0.bn1.running_mean"], after["net.layer2.0.bn1.running_mean"])


def test_lr_multipliers_reach_the_optimizer_groups(tmp_path):
    _, run_dir = run(tmp_path, "mults", train={"lr_mults": {"conv1": 0.1, "conv2": 0.5}, "extractor_lr_mult": 0.5,
                                               "lr": 0.02, "lr_schedule": "constant", "adapter_lr_mult": 2.0})
    groups = load_checkpoint(run_dir / "checkpoint.pt")["optimizers"]["main"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([0.001, 0.005, 0.01, 0.02, 0.04])


def test_unfreezing_schedule_is_top_block_first():
    net = BACKBONES.get("lenet").build()
    head, adapter = linear_head(500, 4), torch.nn.Linear(2, 2)
    plan = FineTuning.for_adaptation(net, head, adapter, TrainConfig(unfreeze=UnfreezeConfig(steps=[2, 4])))
    names = lambda done: [g.name for g in plan.trainable(done)]
    assert names(0) == names(1) == ["head", "adapter"]
    assert names(2) == names(3) == ["head", "adapter", "fc"]
    assert names(4) == names(99) == ["head", "adapter", "fc", "conv2"]  # conv1: not listed, never
    every = FineTuning.for_adaptation(net, head, adapter, TrainConfig(unfreeze=UnfreezeConfig(every=3)))
    assert [g.name for g in every.trainable(9)] == ["head", "adapter", "fc", "conv2", "conv1"]
    assert [g.name for g in every.unfreezing_at(6)] == ["conv2"]


def test_gradual_unfreezing_trains_each_block_only_after_its_step(tmp_path):
    pre, pre_dir = run(tmp_path, "pre", pretrain={"steps": 3}, train={"steps": 0})
    before = load_checkpoint(pre_dir / "checkpoint.pt")["model"]["extractor"]
    changed = {}
    for steps in (2, 3, 5):
        _, run_dir = run(tmp_path, f"s{steps}", pretrain={"steps": 0, "checkpoint": str(pre_dir / "checkpoint.pt")},
                         train={"unfreeze": {"steps": [2, 4]}, "steps": steps, "eval_every": steps, "log_every": 1})
        after = load_checkpoint(run_dir / "checkpoint.pt")["model"]["extractor"]
        changed[steps] = {block: not torch.equal(before[k], after[k])
                          for block, k in (("conv1", "0.weight"), ("conv2", "3.weight"), ("fc", "8.weight"))}
    assert changed[2] == {"conv1": False, "conv2": False, "fc": False}
    assert changed[3] == {"conv1": False, "conv2": False, "fc": True}
    assert changed[5] == {"conv1": False, "conv2": True, "fc": True}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    flags = lambda tag: [e.value for e in events.Scalars(tag)]
    assert flags("trainable/fc") == [0, 0, 1, 1, 1] and flags("trainable/conv2") == [0, 0, 0, 0, 1]
    assert [e.step for e in events.Scalars("lr/fc")] == [3, 4, 5]


RESUME = dict(data={"target_labels_per_class": 2},
              train={"steps": 12, "eval_every": 2, "checkpoint_every": 5, "unfreeze": {"every": 4},
                     "lr_mults": {"conv1": 0.5}, "early_stopping": {"validator": "source_val", "patience": 50}})


@pytest.mark.parametrize("stop", [4, 9])  # exactly at an unfreezing (after 4 steps), and between two
def test_resume_across_unfreezing_boundaries_ends_exactly_like_an_uninterrupted_run(stop, tmp_path, monkeypatch):
    from da.train import TIMING_FIELDS

    reference, ref_dir = run(tmp_path, "ref", **RESUME)
    resumed = stopped_then_resumed(build_config(tiny_config(**RESUME)), tmp_path / "cut", monkeypatch, stop)
    assert resumed == {k: v for k, v in reference.items() if k not in TIMING_FIELDS}
    for name in ("checkpoint.pt", "best.pt"):
        a, b = load_checkpoint(ref_dir / name), load_checkpoint(tmp_path / "cut" / name)
        assert all(torch.equal(a["model"]["extractor"][k], b["model"]["extractor"][k]) for k in a["model"]["extractor"])
        assert a["optimizers"]["main"]["param_groups"] == b["optimizers"]["main"]["param_groups"]


# ---------------------------------------------------------------- early stopping


def test_early_stopping_restores_the_best_evaluation(tmp_path):
    summary, run_dir = run(tmp_path, "es", train={"steps": 30, "eval_every": 2, "lr": 0.05,
                                                  "early_stopping": {"validator": "entropy", "patience": 2}})
    history = summary["history"]
    best, since = best_evaluation(history, "entropy")
    info = summary["early_stopping"]
    assert info["stopped_early_at"] == history[-1]["step"] < 30 and since == 2
    assert info["restored_step"] == best["step"] != history[-1]["step"]
    for key in ("source_val_acc", "source_test_acc", "target_test_acc"):
        assert summary[key] == best[key]
    recomputed = evaluate_run(run_dir)  # the final checkpoint is the restored one
    assert recomputed["step"] == best["step"]
    assert {k: recomputed[k] for k in ("source_val_acc", "source_test_acc", "target_test_acc")} == \
        {k: best[k] for k in ("source_val_acc", "source_test_acc", "target_test_acc")}
    assert load_checkpoint(run_dir / "best.pt")["step"] == best["step"]


# ---------------------------------------------------------------- new tasks


def test_new_datasets_have_their_own_label_sets(monkeypatch):
    import da.data.digits as digits
    from da.data import DomainData, Split

    shapes = DATASETS.get("shapes").load(None, "source")
    assert shapes.num_classes == 2 and shapes.train.x.shape[1:] == (1, 28, 28)
    assert torch.bincount(shapes.train.y).tolist() == [3000, 3000] and torch.bincount(shapes.test.y).tolist() == [1000, 1000]
    assert torch.equal(DATASETS.get("shapes").load(None, "source").train.x, shapes.train.x)  # generated from a seed
    assert not torch.equal(DATASETS.get("shapes").load(None, "target").train.x, shapes.train.x)
    assert -1 <= shapes.train.x.min() < shapes.train.x.max() <= 1

    fake = Split(torch.zeros(10, 1, 28, 28), torch.arange(10))
    monkeypatch.setattr(digits, "mnist", lambda root, download, role: DomainData("mnist", fake, fake, 10))
    parity = DATASETS.get("mnist_parity").load(None, "source")
    assert parity.num_classes == 2 and parity.train.y.tolist() == [0, 1] * 5


@pytest.mark.data
@needs_data
def test_mnist_parity_relabels_real_mnist_even_odd():
    d = DATASETS.get("mnist_parity").load(real_data_root(), "source")
    assert d.num_classes == 2
    assert torch.bincount(d.train.y).tolist() == [sum(MNIST_TRAIN[0::2]), sum(MNIST_TRAIN[1::2])]
    assert torch.bincount(d.test.y).tolist() == [sum(MNIST_TEST[0::2]), sum(MNIST_TEST[1::2])]


def test_new_task_loads_only_the_pretrained_extractor(tmp_path, write_config, cli):
    _, pre_dir = run(tmp_path, "pre", pretrain={"steps": 3}, train={"steps": 0})
    source = load_checkpoint(pre_dir / "checkpoint.pt")
    shapes = {"source": "shapes", "target": "shapes", "source_val_size": 100, "source_train_size": 64}
    pretrain = {"steps": 0, "checkpoint": str(pre_dir / "checkpoint.pt"), "load": "extractor"}
    summary, run_dir = run(tmp_path, "new", data=shapes, pretrain=pretrain, train={"steps": 0})
    state = load_checkpoint(run_dir / "checkpoint.pt")
    assert all(torch.equal(source["model"]["extractor"][k], state["model"]["extractor"][k]) for k in source["model"]["extractor"])
    assert state["model"]["head"]["weight"].shape == (2, 500) and 0 <= summary["target_test_acc"] <= 1
    cfg = tiny_config(data=shapes, pretrain={**pretrain, "load": "all"})
    code, _, err = cli("train", "-c", write_config(cfg), "--out", tmp_path / "all", "-q")
    assert code == 2 and "set pretrain.load: extractor" in one_line_error(err)


# ---------------------------------------------------------------- bad configs


BAD = [
    ({"train": {"lr_mults": {"conv3": 0.1}}}, "train.lr_mults.conv3: no such block; backbone lenet has blocks (bottom to top): conv1, conv2, fc"),
    ({"train": {"lr_mults": {"conv1": -1}}}, "train.lr_mults.conv1 must be a non-negative number"),
    ({"train": {"lr_mults": {"conv1": 0.1}, "extractor": "freeze"}}, "lr_mults has no effect with train.extractor: freeze"),
    ({"train": {"unfreeze": {"every": 5}, "extractor": "freeze"}}, "train.unfreeze needs train.extractor: finetune"),
    ({"train": {"unfreeze": {}}}, "train.unfreeze needs exactly one of every"),
    ({"train": {"unfreeze": {"steps": [5, 2]}}}, "train.unfreeze.steps must not decrease"),
    ({"train": {"unfreeze": {"steps": [1, 2, 3, 4]}}}, "lists 4 steps but backbone lenet has blocks"),
    ({"train": {"unfreeze": {"every": 0}}}, "train.unfreeze.every must be positive"),
    ({"train": {"early_stopping": {"validator": "oracle"}}}, "validator must be a validator the run scores"),
    ({"train": {"early_stopping": {"patience": 0}}}, "train.early_stopping.patience must be positive"),
    ({"train": {"source_weight": 0}}, "nothing labelled to train on"),
    ({"data": {"target_labels_per_class": "some"}}, "data.target_labels_per_class must be a non-negative integer or all"),
    ({"data": {"target_labels_per_class": -2}}, "data.target_labels_per_class must be a non-negative integer or all"),
    ({"pretrain": {"load": "extractor"}}, "pretrain.load: extractor needs pretrain.checkpoint"),
    ({"pretrain": {"load": "head"}}, "pretrain.load must be one of all, extractor"),
]


@pytest.mark.parametrize("sections,message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_transfer_configs_get_one_line(sections, message, write_config, cli):
    code, _, err = cli("train", "-c", write_config(tiny_config(**sections)), "--dry-run")
    assert code == 2 and message in one_line_error(err)


@pytest.mark.parametrize("data,message", [
    ({"target_labels_per_class": 65}, "target_labels_per_class=65 exceeds the 64 images of class 0 in synthetic train; "
                                      "lower it to at most 64"),
    ({"source_train_size": 500}, "data.source_train_size=500 exceeds the 192 source training images"),
])
def test_too_many_labels_or_images_asked_for_is_one_line(data, message, write_config, cli, tmp_path):
    code, _, err = cli("train", "-c", write_config(tiny_config(data=data)), "--out", tmp_path / "r", "-q")
    assert code == 2 and message in one_line_error(err)


@pytest.mark.parametrize("name", ["lenet", "resnet18"])
def test_backbone_blocks_partition_the_parameters_bottom_to_top(name):
    net = BACKBONES.get(name).build()
    blocks = net.blocks()
    assert tuple(n for n, _ in blocks) == BACKBONES.get(name).block_names
    ids = [id(p) for _, module in blocks for p in module.parameters()]
    assert len(set(ids)) == len(ids) and set(ids) == {id(p) for p in net.parameters()}
    if name == "lenet":  # the blocks in order are the network
        net.eval()
        x = torch.randn(2, 1, 28, 28)
        y = x
        for _, module in blocks:
            y = module(y)
        assert torch.equal(y, net(x))

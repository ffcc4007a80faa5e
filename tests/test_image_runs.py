"""Training through the file-backed path: every adapter, exact resume, the shipped digit config on
PNG folders, ResNet-50 with the Office settings, and local backbone weights."""
from __future__ import annotations

import json

import pytest
import torch

from da.composition import build_config, train
from da.registry import ADAPTERS
from da.train import TIMING_FIELDS
from tests.conftest import ROOT, one_line_error, open_set_source, stopped_then_resumed, tiny_config
from tests.image_data import write_folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    write_folder(root / "source", per_class=12)
    write_folder(root / "target", per_class=12, colour=True, seed=1)
    return root


def image_config(folders, **sections):
    data = {"source": {"folder": str(folders / "source")}, "target": {"folder": str(folders / "target")},
            "source_val_size": 6, "num_workers": 0}
    return tiny_config(data={**data, **sections.pop("data", {})}, **sections)


@pytest.mark.parametrize("name", ADAPTERS.names())
def test_every_adapter_runs_on_image_folders(name, folders, tmp_path):
    adapter = {"name": name, "hidden": 32} if name == "dann" else {"name": name}
    if name == "subspace":
        adapter.update(dims=4, classifier="linear")
    cfg = image_config(folders, pretrain={"steps": 2, "batch_size": 8},
                       train={"steps": 2, "batch_size": 8, "eval_every": 2, "fit_samples": 16})
    cfg["adapter"] = adapter
    cfg["data"]["source"] = open_set_source(name, cfg["data"]["source"])
    summary = train(build_config(cfg), tmp_path, show_progress=False)
    assert summary["adapter"] == name and 0.0 <= summary["target_test_acc"] <= 1.0
    assert summary["skipped_images"] == {"source": 0, "target": 0}
    assert summary["image_data"]["target"]["classes"] == 3


def test_a_stopped_file_backed_run_resumes_to_the_same_summary(folders, tmp_path, monkeypatch):
    transforms = {"train": [{"name": "RandomResizedCrop", "size": 28, "scale": [0.7, 1.0]}, "RandomHorizontalFlip"]}
    cfg = image_config(folders, data={"transforms": transforms})  # workers: test_image_data.py
    config = build_config(cfg)
    (tmp_path / "straight").mkdir()
    straight = train(config, tmp_path / "straight", show_progress=False)
    resumed = stopped_then_resumed(config, tmp_path / "resumed", monkeypatch, step=4)
    assert resumed == {k: v for k, v in straight.items() if k not in TIMING_FIELDS}


def test_skipped_images_are_counted_per_domain(folders, tmp_path, cli, write_config):
    import shutil

    target = tmp_path / "target"
    shutil.copytree(folders / "target", target)
    (target / "a" / "000.png").write_bytes(b"\x89PNG broken")
    (target / "b" / "readme.txt").write_text("not an image")
    cfg = image_config(folders, data={"target": {"folder": str(target)}})
    code, _, err = cli("train", "-c", write_config(cfg), "--out", tmp_path / "stopped")
    assert code == 2 and "000.png" in one_line_error(err) and not (tmp_path / "stopped" / "checkpoint.pt").exists()
    cfg["data"]["skip_bad_images"] = True
    code, _, _ = cli("train", "-c", write_config(cfg), "--out", tmp_path / "run", "-q")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert code == 0 and summary["skipped_images"] == {"source": 0, "target": 2}


def test_the_shipped_digit_config_runs_on_png_folders(folders, tmp_path, cli):
    code, out, err = cli("train", "-c", ROOT / "configs/mnist_usps/dann.yaml", "--out", tmp_path / "run", "-q",
                         "--set", f"data.source={{folder: {folders / 'source'}, test_fraction: 0.25}}",
                         "--set", f"data.target={{folder: {folders / 'target'}}}", "--set", "data.source_val_size=3",
                         "--set", "pretrain.steps=2", "--set", "train.steps=2", "--set", "device=cpu",
                         "--set", "pretrain.batch_size=8", "--set", "train.batch_size=8")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["image_data"]["source"]["test_images"] == 9
    assert "held out" in summary["image_data"]["source"]["test_split"]


def test_resnet50_with_the_office_settings_runs_on_a_224_folder(tmp_path, cli):
    write_folder(tmp_path / "s", classes=("a", "b"), per_class=2, size=64, colour=True)
    write_folder(tmp_path / "t", classes=("a", "b"), per_class=2, size=64, colour=True, seed=1)
    code, _, err = cli("train", "-c", ROOT / "configs/office31/dann.yaml", "--out", tmp_path / "run", "-q",
                       "--set", f"data.source={{folder: {tmp_path / 's'}}}", "--set", f"data.target={{folder: {tmp_path / 't'}}}",
                       "--set", "data.source_val_size=1", "--set", "model.pretrained=false", "--set", "device=cpu",
                       "--set", "train.steps=2", "--set", "train.batch_size=2", "--set", "train.eval_every=2")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["backbone"] == "resnet50" and summary["stages"][-1]["steps"] == 2


def test_model_weights_load_a_local_torchvision_state_dict(tmp_path, folders):
    import torchvision

    from da.composition import build_model
    from da.domains import load_domains

    net = torchvision.models.resnet18()
    torch.save(net.state_dict(), tmp_path / "resnet18.pth")
    cfg = image_config(folders, model={"backbone": "resnet18", "weights": str(tmp_path / "resnet18.pth")})
    config = build_config(cfg)
    domains = load_domains(config.data, torch.device("cpu"), "resnet18")
    assert domains.source_train.input_shape == (3, 224, 224)
    model = build_model(config, domains, torch.device("cpu"))
    assert torch.equal(model.extractor.net.conv1.weight, net.conv1.weight)


def test_model_weights_errors_name_the_file(tmp_path, folders, cli, write_config):
    cfg = image_config(folders, model={"backbone": "resnet18", "weights": str(tmp_path / "missing.pth")})
    code, _, err = cli("train", "-c", write_config(cfg))
    assert code == 2 and f"model.weights: no file {tmp_path / 'missing.pth'}" in one_line_error(err)
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "other.pth")
    cfg["model"]["weights"] = str(tmp_path / "other.pth")
    code, _, err = cli("train", "-c", write_config(cfg, "other.yaml"))
    assert code == 2 and "does not fit model.backbone" in one_line_error(err)

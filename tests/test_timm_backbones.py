"""timm backbones: preprocessing as timm resolves it, weights from files and the Hugging Face cache,
blocks and layer decay, normalisation layers for test-time methods, and their refusals."""
from __future__ import annotations

import math

import pytest
import torch

from da.composition import build_config, train
from da.config import ModelConfig, TrainConfig
from da.data.transforms import build_transform
from da.finetune import FineTuning
from da.models.backbone_entry import backbone_entry
from da.models.pretrained import load_weights
from da.registry import ADAPTERS, BACKBONES
from tests.conftest import one_line_error, open_set_source, tiny_config

#: A ViT small enough for a step in milliseconds: 28x28 grey digits as 16 patches, 2 blocks of width 48.
TINY_VIT = {"backbone": "timm/vit_tiny_patch16_224", "input_size": 28,
            "backbone_kwargs": {"patch_size": 7, "depth": 2, "embed_dim": 48, "num_heads": 2}}


def vit_config(**sections) -> dict:
    """``tiny_config`` with the tiny ViT and 2 + 2 steps; ``sections`` merged in (``adapter`` replaced)."""
    adapter = sections.pop("adapter", None)
    cfg = tiny_config(pretrain={"steps": 2, "batch_size": 8},
                      train={"steps": 2, "batch_size": 8, "eval_every": 2, "fit_samples": 16, **sections.pop("train", {})},
                      model={**TINY_VIT, **sections.pop("model", {})}, **sections)
    if adapter is not None:
        cfg["adapter"] = adapter
    return cfg


@pytest.mark.parametrize("name", ["timm/vit_small_patch16_224.augreg_in21k_ft_in1k", "timm/convnext_atto",
                                  "timm/resnet50.a1_in1k", "timm/swin_tiny_patch4_window7_224"])
def test_the_pipeline_resizes_crops_and_normalises_as_timm_resolves_the_weights(name):
    import timm
    from torchvision.transforms import v2

    entry = BACKBONES.get(name)
    with torch.device("meta"):
        net = timm.create_model(name.removeprefix("timm/"), pretrained=False, num_classes=0)
    want = timm.data.resolve_data_config(model=net)
    cfg = entry.pretrained_cfg
    assert (cfg.input_size, cfg.interpolation, cfg.crop_pct, cfg.mean, cfg.std) == (
        want["input_size"], want["interpolation"], want["crop_pct"], want["mean"], want["std"])
    resize, crop = build_transform(None, cfg, cfg.test_transform, "t").steps
    side = want["input_size"][1]
    assert resize.size == [math.floor(side / want["crop_pct"])] * 2  # timm's scale_size
    assert resize.interpolation == v2.InterpolationMode(want["interpolation"]) and tuple(crop.size) == (side, side)
    train_steps = build_transform(None, cfg, cfg.train_transform, "t").steps
    assert train_steps[1].interpolation == v2.InterpolationMode(want["interpolation"])
    assert entry.out_features == net.num_features and entry.weights_tag == net.pretrained_cfg["tag"]


def test_blocks_are_vit_blocks_and_cnn_stages_and_partition_the_parameters():
    assert BACKBONES.get("timm/vit_small_patch16_224").block_names == ("stem", *(f"blocks.{i}" for i in range(12)))
    assert BACKBONES.get("timm/convnext_atto").block_names == ("stem", "stages.0", "stages.1", "stages.2", "stages.3", "head")
    extractor = backbone_entry(ModelConfig(**TINY_VIT)).build()
    seen = [id(p) for _, block in extractor.blocks() for p in block.parameters()]
    assert sorted(seen) == sorted(id(p) for p in extractor.parameters())  # each parameter in exactly one block


def test_layer_decay_scales_each_block_down_from_the_top():
    extractor = backbone_entry(ModelConfig(**TINY_VIT)).build()
    tuning = FineTuning.for_adaptation(extractor, torch.nn.Linear(48, 3), torch.nn.Identity(),
                                       TrainConfig(layer_decay=0.5, extractor_lr_mult=0.1))
    mults = {g.name: g.lr_mult for g in tuning.groups}
    assert mults == {"stem": 0.1 * 0.25, "blocks.0": 0.1 * 0.5, "blocks.1": 0.1, "head": 1.0, "adapter": 1.0}


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_saved_state_dict_loads_back_bitwise_with_the_classifier_dropped(suffix, tmp_path):
    import timm
    from safetensors.torch import save_file

    kwargs = {k: v for k, v in TINY_VIT["backbone_kwargs"].items()}
    source = timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=28, **kwargs)
    path = tmp_path / f"vit{suffix}"
    (save_file if suffix == ".safetensors" else lambda s, p: torch.save(s, p))(source.state_dict(), str(path))
    extractor = backbone_entry(ModelConfig(**TINY_VIT)).build()
    load_weights(extractor, path)
    loaded = extractor.net.state_dict()
    assert set(source.state_dict()) - set(loaded) == {"head.weight", "head.bias"}
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in loaded.items())


def fake_hub_cache(root, repo: str, state: dict) -> None:
    """huggingface_hub's cache layout: models--<owner>--<name>/refs/main -> snapshots/<commit>/model.safetensors."""
    from safetensors.torch import save_file

    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123abcd")
    (folder / "snapshots" / "0123abcd").mkdir(parents=True)
    save_file(state, str(folder / "snapshots" / "0123abcd" / "model.safetensors"))


def test_pretrained_weights_come_from_the_hugging_face_cache_offline(tmp_path, monkeypatch, cli, write_config):
    import timm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    net = timm.create_model("convnext_atto", num_classes=7)
    fake_hub_cache(tmp_path / "hub", "timm/convnext_atto.d2_in1k", net.state_dict())
    extractor = BACKBONES.get("timm/convnext_atto").build(pretrained=True)
    assert torch.equal(extractor.net.stem[0].weight, net.stem[0].weight)
    # a tag the cache does not hold: one line naming what was looked for, where, and the tag it holds
    fake_hub_cache(tmp_path / "hub", "timm/vit_tiny_patch16_224.augreg_in21k", {})
    cfg = vit_config(model={"backbone": "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k", "pretrained": True})
    code, _, err = cli("train", "-c", write_config(cfg), "--out", tmp_path / "run")
    line = one_line_error(err)
    assert code == 2 and not (tmp_path / "run").exists()
    assert f"model.safetensors or pytorch_model.bin of timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k in {tmp_path / 'hub'}" in line
    assert "the cache holds timm/vit_tiny_patch16_224.augreg_in21k:" in line


def test_a_tiny_vit_adapts_and_records_its_preprocessing_and_layer_norms(tmp_path):
    cfg = vit_config(train={"layer_decay": 0.7})
    summary = train(build_config(cfg), tmp_path, show_progress=False)
    assert summary["preprocessing"]["input_size"] == [3, 28, 28] and summary["preprocessing"]["interpolation"] == "bicubic"
    assert summary["backbone_version"].startswith("timm ") and summary["weights_tag"] is None
    assert summary["norm_layers"] == ["LayerNorm"]


def test_norm_refuses_a_vit_without_batch_norm(tmp_path, cli, write_config):
    cfg = vit_config(stages=["pretrain", "norm"], adapter={"name": "source_only"})
    code, _, err = cli("train", "-c", write_config(cfg), "--out", tmp_path / "norm")
    assert code == 2 and "batch norm" in one_line_error(err) and not (tmp_path / "norm").exists()


def test_tent_changes_only_layer_norm_affine_parameters(tmp_path):
    from da.checkpoint import load_checkpoint

    cfg = vit_config(stages=["pretrain", {"name": "tent", "batch_size": 16, "lr": 0.1}], adapter={"name": "source_only"})
    source = {**cfg, "stages": ["pretrain", "adapt"], "train": {**cfg["train"], "steps": 0}}
    for name, c in (("source", source), ("tent", cfg)):
        (tmp_path / name).mkdir()
        train(build_config(c), tmp_path / name, show_progress=False)
    before = load_checkpoint(tmp_path / "source" / "checkpoint.pt")["model"]["extractor"]
    after = load_checkpoint(tmp_path / "tent" / "checkpoint.pt")["model"]["extractor"]
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".norm" in k or k.startswith("net.norm") for k in changed), changed


@pytest.mark.parametrize("model,needle", [
    ({"backbone": "timm/vit_tiny_patch16_22"}, "closest: vit_tiny_patch16_224"),
    ({"backbone": "timm/convnext_atto", "input_size": 8}, "cannot take 8x8"),
    ({"backbone": "timm/convnext_atto.in22k"}, "no weights tagged 'in22k'"),
    ({"backbone": "resnet18", "input_size": 64}, "built one way"),
    ({**TINY_VIT, "head": "zero_shot"}, "CLIP text tower"),
])
def test_bad_backbones_are_one_line_before_a_run_folder(model, needle, tmp_path, cli, write_config):
    cfg = vit_config()
    cfg["model"] = model
    code, _, err = cli("train", "-c", write_config(cfg), "--out", tmp_path / "run")
    assert code == 2 and needle in one_line_error(err) and not (tmp_path / "run").exists()


def test_weights_of_another_architecture_name_the_keys_before_a_run_folder(tmp_path, cli, write_config):
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("convnext_atto").state_dict(), str(tmp_path / "convnext.safetensors"))
    cfg = vit_config(model={"weights": str(tmp_path / "convnext.safetensors")})
    code, _, err = cli("train", "-c", write_config(cfg), "--out", tmp_path / "run")
    line = one_line_error(err)
    assert code == 2 and "does not fit model.backbone" in line and "missing" in line and "unexpected" in line
    assert not (tmp_path / "run").exists()


def test_a_backbone_built_for_another_size_than_the_data_says_so(tmp_path, cli, write_config):
    cfg = vit_config()
    cfg["model"]["input_size"] = 56
    code, _, err = cli("train", "-c", write_config(cfg), "--out", tmp_path / "run")
    assert code == 2 and "set model.input_size: 28" in one_line_error(err)


@pytest.mark.slow
@pytest.mark.parametrize("name", ADAPTERS.names())
def test_every_adapter_trains_a_tiny_vit(name, tmp_path):
    adapter = {"name": name, "hidden": 32} if name == "dann" else {"name": name}
    if name == "subspace":
        adapter.update(dims=4, classifier="linear")
    cfg = vit_config(adapter=adapter)
    cfg["data"]["source"] = open_set_source(name, {"name": "synthetic"})
    summary = train(build_config(cfg), tmp_path, show_progress=False)
    assert summary["adapter"] == name and 0.0 <= summary["target_test_acc"] <= 1.0


@pytest.mark.parametrize("model,norms", [({"backbone": "timm/convnext_atto", "input_size": 32}, ["LayerNorm2d"]),
                                         ({"backbone": "timm/resnet18", "input_size": 32}, ["BatchNorm2d"])])
def test_a_convnext_and_a_timm_resnet_train_on_image_folders(model, norms, tmp_path):
    from tests.image_data import write_folder

    write_folder(tmp_path / "source", per_class=4, size=40, colour=True)
    write_folder(tmp_path / "target", per_class=4, size=40, colour=True, seed=1)
    cfg = vit_config(data={"source": {"folder": str(tmp_path / "source")}, "target": {"folder": str(tmp_path / "target")},
                           "source_val_size": 3, "num_workers": 0}, adapter={"name": "mmd"})
    cfg["model"] = model
    (tmp_path / "run").mkdir()
    summary = train(build_config(cfg), tmp_path / "run", show_progress=False)
    assert summary["norm_layers"] == norms and summary["preprocessing"]["input_size"] == [3, 32, 32]

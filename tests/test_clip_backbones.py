"""open_clip backbones: CLIP's preprocessing, weights from a local file, and the zero-shot head giving
CLIP's own logits, on a tiny randomly initialised CLIP."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from da.composition import build_config, build_model
from da.domains import load_domains
from da.registry import BACKBONES
from tests.conftest import one_line_error, tiny_config

TINY = {"embed_dim": 16, "vision_cfg": {"image_size": 28, "layers": 2, "width": 32, "patch_size": 7, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A registered tiny open_clip architecture ``tiny-clip-da`` and a checkpoint of it (both towers)."""
    import open_clip

    folder = tmp_path_factory.mktemp("clip")
    (folder / "tiny-clip-da.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder / "tiny-clip-da.json")
    torch.manual_seed(0)
    clip = open_clip.create_model("tiny-clip-da", pretrained=None)
    torch.save(clip.state_dict(), folder / "clip.pt")
    return clip.eval(), folder / "clip.pt"


def test_clip_preprocessing_is_open_clips(tiny_clip):
    import open_clip

    cfg = BACKBONES.get("open_clip/tiny-clip-da").pretrained_cfg
    assert cfg.mean == open_clip.OPENAI_DATASET_MEAN and cfg.std == open_clip.OPENAI_DATASET_STD
    assert (cfg.input_size, cfg.interpolation, cfg.crop_pct) == ((3, 28, 28), "bicubic", 1.0)


def test_the_zero_shot_head_gives_clips_logits(tiny_clip):
    import open_clip

    clip, weights = tiny_clip
    cfg = build_config(tiny_config(model={"backbone": "open_clip/tiny-clip-da", "weights": str(weights),
                                          "head": "zero_shot", "class_names": [f"digit {i}" for i in range(4)]}))
    domains = load_domains(cfg.data, torch.device("cpu"), cfg.model)
    model = build_model(cfg, domains, torch.device("cpu"))
    model.extractor.eval()
    x = domains.target_test.x[:5].float().expand(-1, 3, -1, -1)
    with torch.no_grad():
        ours = model.head(model.extractor(x))
        tokens = open_clip.get_tokenizer("tiny-clip-da")([f"a photo of a digit {i}." for i in range(4)])
        image, text = F.normalize(clip.encode_image(x), dim=-1), F.normalize(clip.encode_text(tokens), dim=-1)
        theirs = clip.logit_scale.exp() * image @ text.T
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_a_clip_run_trains_and_bad_clip_inputs_are_one_line(tiny_clip, tmp_path, cli, write_config):
    _, weights = tiny_clip
    cfg = tiny_config(model={"backbone": "open_clip/tiny-clip-da", "weights": str(weights), "head": "zero_shot"},
                      pretrain={"steps": 0}, train={"steps": 2, "layer_decay": 0.8})
    cfg["adapter"] = {"name": "mmd"}
    code, _, err = cli("train", "-c", write_config(cfg), "--out", tmp_path / "run", "-q")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["backbone_version"].startswith("open_clip_torch") and summary["weights_tag"] == "clip.pt"
    cfg["model"]["backbone"] = "open_clip/ViT-B-33"
    code, _, err = cli("train", "-c", write_config(cfg, "bad.yaml"), "--out", tmp_path / "bad")
    assert code == 2 and "closest: ViT-B-32" in one_line_error(err) and not (tmp_path / "bad").exists()

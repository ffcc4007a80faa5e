"""ADDA (Tzeng et al. 2017): own target encoder, started from the source one; the source encoder stays fixed."""
from __future__ import annotations

import torch

from conftest import tiny_config
from da.checkpoint import load_checkpoint
from da.config import build_config
from da.train import train
from methods_helpers import resumed_equals_uninterrupted

ADDA = {**tiny_config(), "adapter": {"name": "adda", "hidden": 16}}


def run(tmp_path, name: str, steps: int) -> dict:
    cfg = build_config({**ADDA, "train": {**ADDA["train"], "steps": steps}})
    (tmp_path / name).mkdir()
    train(cfg, tmp_path / name, show_progress=False)
    return load_checkpoint(tmp_path / name / "checkpoint.pt")


def test_target_encoder_starts_as_the_source_encoder_which_stays_fixed(tmp_path, monkeypatch):
    from da.adapters.adda import ADDA as Adda

    started = {}
    real = Adda.start

    def start(self, model):  # record the target encoder the moment it is built
        real(self, model)
        started.setdefault("target", {k: v.clone() for k, v in self.target_encoder.state_dict().items()})
        started.setdefault("source", {k: v.clone() for k, v in model.extractor.state_dict().items()})

    monkeypatch.setattr(Adda, "start", start)
    after = run(tmp_path, "adda", steps=6)
    for key, value in started["source"].items():
        assert torch.equal(started["target"][key], value), f"the target encoder must start as the source one ({key})"
        assert torch.equal(after["model"]["extractor"][key], value), f"the source encoder must stay fixed ({key})"
    moved = [k for k, v in started["target"].items() if not torch.equal(after["model"]["adapter"][f"target_encoder.{k}"], v)]
    assert moved, "the target encoder must train"


def test_the_head_stays_the_source_classifier(tmp_path):
    before, after = run(tmp_path, "zero", steps=0), run(tmp_path, "six", steps=6)
    for key, value in before["model"]["head"].items():
        assert torch.equal(after["model"]["head"][key], value)


def test_adda_resumes_exactly_mid_stage(tmp_path, monkeypatch):
    resumed_equals_uninterrupted(ADDA, tmp_path, monkeypatch, "adapt", 3)


def test_the_encoder_step_sees_where_the_target_batch_lies():
    """The encoder step scores a target batch alone: a discriminator with batch norm would centre it on
    its own mean, so shifting every target feature would not change the score the encoder learns from."""
    from da.adapters.adda import ADDA

    torch.manual_seed(0)
    adda = ADDA(feature_dim=8, hidden=16).train()
    f_t = torch.randn(32, 8)
    assert not torch.allclose(adda.discriminator(f_t), adda.discriminator(f_t + 3.0), atol=1e-3)

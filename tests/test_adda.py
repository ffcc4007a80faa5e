"""ADDA (Tzeng et al. 2017): own target encoder, started from the source one; the source encoder stays fixed."""
from __future__ import annotations

import torch

from conftest import tiny_config
from da.checkpoint import load_checkpoint
from da.composition import build_config, train
from da.stages.adda import ADDA, frozen_statistics
from methods_helpers import resumed_equals_uninterrupted

CONFIG = {**tiny_config(), "adapter": {"name": "adda", "hidden": 16}}


def run(tmp_path, name: str, steps: int) -> dict:
    cfg = build_config({**CONFIG, "train": {**CONFIG["train"], "steps": steps}})
    (tmp_path / name).mkdir()
    train(cfg, tmp_path / name, show_progress=False)
    return load_checkpoint(tmp_path / name / "checkpoint.pt")


def test_target_encoder_starts_as_the_source_encoder_which_stays_fixed(tmp_path, monkeypatch):
    started = {}
    real = ADDA.fill_slots

    def fill_slots(self, run, fresh):  # record the target encoder the moment it is built
        real(self, run, fresh)
        m = run.model
        started.setdefault("target", {k: v.clone() for k, v in m.encoders["target"].state_dict().items()})
        started.setdefault("source", {k: v.clone() for k, v in m.extractor.state_dict().items()})

    monkeypatch.setattr(ADDA, "fill_slots", fill_slots)
    after = run(tmp_path, "adda", steps=6)
    for key, value in started["source"].items():
        assert torch.equal(started["target"][key], value), f"the target encoder must start as the source one ({key})"
        assert torch.equal(after["extractor"][key], value), f"the source encoder must stay fixed ({key})"
    moved = [k for k, v in started["target"].items() if not torch.equal(after["encoder.target"][k], v)]
    assert moved, "the target encoder must train"


def test_the_head_stays_the_source_classifier(tmp_path):
    before, after = run(tmp_path, "zero", steps=0), run(tmp_path, "six", steps=6)
    for key, value in before["head"].items():
        assert torch.equal(after["head"][key], value)


def test_adda_resumes_exactly_mid_stage(tmp_path, monkeypatch):
    resumed_equals_uninterrupted(CONFIG, tmp_path, monkeypatch, "adda", 3)


def test_the_encoder_step_sees_where_the_target_batch_lies():
    """The encoder step scores a target batch alone: a discriminator with batch norm would centre it on
    its own mean, so shifting every target feature would not change the score the encoder learns from."""
    from da.adapters.dann import domain_discriminator

    torch.manual_seed(0)
    discriminator = domain_discriminator(8, 16, batch_norm=False).train()
    f_t = torch.randn(32, 8)
    assert not torch.allclose(discriminator(f_t), discriminator(f_t + 3.0), atol=1e-3)


def test_the_fixed_source_encoder_normalises_by_its_batch_but_keeps_its_statistics():
    """Both encoders run in training mode (the discriminator cannot tell them apart by mode); the source
    encoder's running statistics stay as source training left them."""
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6)).train()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    x = torch.randn(16, 4) * 3 + 5
    with torch.no_grad(), frozen_statistics(encoder):
        out = encoder(x)
    assert torch.allclose(out.mean(0), torch.zeros(6), atol=1e-5), "training mode: the batch's own statistics"
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed"
    encoder(x)  # outside the context the running statistics move again
    assert not torch.equal(encoder[1].running_mean, before["1.running_mean"])

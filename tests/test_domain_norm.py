"""Per-domain batch norm (train.batch_norm: per_domain): each domain normalised by its own statistics."""
from __future__ import annotations

import signal

import pytest
import torch
from torch import nn

from conftest import kill_and_resume, one_line_error, results, tiny_config
from da.composition import build_config, train
from da.evaluate import load_run
from da.models.domain_norm import per_domain, routed, shared_state, start_target
from da.train import accuracy

PER_DOMAIN = {"model": {"bottleneck": 16}, "train": {"batch_norm": "per_domain"}}


def shifted(n: int = 256, shift: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 4, generator=g), torch.randn(n, 4, generator=g) * 3 + shift


def test_a_training_batch_is_normalised_per_domain_and_each_domain_keeps_its_statistics():
    (norm,) = per_domain(nn.Sequential(nn.BatchNorm1d(4)))
    norm.train()
    source, target = shifted()
    for _ in range(100):
        with routed([norm], split=len(source)):
            out = norm(torch.cat([source, target]))
    out_s, out_t = out.split(len(source))
    for part in (out_s, out_t):  # each domain's rows centred and scaled on their own
        assert part.mean(0).abs().max() < 1e-5 and (part.var(0, unbiased=False) - 1).abs().max() < 1e-3
    assert torch.allclose(norm.source.running_mean, source.mean(0), atol=1e-4)
    assert torch.allclose(norm.target.running_mean, target.mean(0), atol=1e-4)
    norm.eval()
    with routed([norm], "target"):
        assert norm(target).mean(0).abs().max() < 0.05
    with routed([norm], "source"):
        assert norm(target).mean(0).min() > 2  # the source's statistics leave the shift in


def test_shared_batch_norm_normalises_both_domains_together():
    bn = nn.BatchNorm1d(4).train()
    source, target = shifted()
    out_s, _ = bn(torch.cat([source, target])).split(len(source))
    assert out_s.mean(0).max() < -0.5  # the contrast the per-domain layers remove


def test_start_target_takes_the_target_images_statistics():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    norms = per_domain(net)
    net.eval()
    source, target = shifted()
    start_target(norms, net, target.split(64))  # an average of 4 batches' statistics
    reached = net[0](target).detach()
    assert torch.allclose(norms[0].target.running_mean, reached.mean(0), atol=1e-4)
    assert torch.allclose(norms[0].target.running_var, reached.var(0), rtol=0.05)
    assert torch.equal(norms[0].target.weight, norms[0].source.weight)
    assert not norms[0].target.training and norms[0].target.momentum == norms[0].source.momentum


def test_weights_load_across_shared_and_per_domain_models():
    plain = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    with torch.no_grad():
        plain[1].running_mean += 3
        plain[1].weight += 1
    split = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    (norm,) = per_domain(split)
    split.load_state_dict(plain.state_dict())  # a shared checkpoint: both domains' layers take it
    for layer in (norm.source, norm.target):
        assert torch.equal(layer.running_mean, plain[1].running_mean) and torch.equal(layer.weight, plain[1].weight)
    with torch.no_grad():
        norm.target.running_mean += 10
    back = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    back.load_state_dict(shared_state(split.state_dict(), back))  # the source's layer, as pretraining left it
    assert torch.equal(back[1].running_mean, norm.source.running_mean)


def test_a_run_evaluates_each_domain_with_its_own_statistics(tmp_path):
    config = build_config({**tiny_config(**PER_DOMAIN), "adapter": {"name": "coral"}})
    summary = train(config, tmp_path, show_progress=False)
    model, domains, _ = load_run(tmp_path)
    norm = model.domain_norms[0]
    assert not torch.equal(norm.source.running_mean, norm.target.running_mean)
    with model.eval_mode():
        assert accuracy(model.predict("target", True), domains.target_test) == summary["target_test_acc"]
        assert accuracy(model.predict("source", True), domains.source_test) == summary["source_test_acc"]
        with routed(model.domain_norms, "source"):  # the target read with the source's statistics
            assert not torch.equal(model.features(domains.target_test.x), model.embed(domains.target_test.x, "target"))


@pytest.mark.slow  # among the longest of the default suite (kept for CI's slow pass)
def test_a_per_domain_run_resumes_exactly(tmp_path):
    config = tiny_config(model={"bottleneck": 16}, pretrain={"steps": 30, "batch_size": 16},
                         train={"steps": 60, "batch_size": 16, "eval_every": 30, "log_every": 10, "checkpoint_every": 7,
                                "batch_norm": "per_domain"})
    (tmp_path / "ref").mkdir()
    reference = train(build_config({**config, "name": "cfg"}), tmp_path / "ref", show_progress=False)
    (tmp_path / "cut").mkdir()
    assert results(kill_and_resume(tmp_path / "cut", (1, 20), signal.SIGKILL, config)) == results(reference)


@pytest.mark.parametrize("first,then", [("shared", "per_domain"), ("per_domain", "shared")])
def test_a_pretrained_checkpoint_serves_either_kind_of_model(tmp_path, first, then):
    source_only = {"adapter": {"name": "source_only"}}
    (tmp_path / "a").mkdir()
    pretrained = {**tiny_config(model={"bottleneck": 16}, train={"batch_norm": first}), **source_only}
    first_run = train(build_config(pretrained), tmp_path / "a", show_progress=False)
    (tmp_path / "b").mkdir()
    loaded = tiny_config(model={"bottleneck": 16}, pretrain={"checkpoint": str(tmp_path / "a" / "checkpoint.pt")},
                         train={"batch_norm": then})
    summary = train(build_config({**loaded, **source_only}), tmp_path / "b", show_progress=False)
    # The loaded model reads the source as the checkpoint's model did: the same source weights and
    # statistics (the shared layer, or the source's copy of it), so the same source accuracies.
    assert summary["pretrain_source_test_acc"] == first_run["source_test_acc"]
    assert summary["pretrain_source_val_acc"] == first_run["source_val_acc"]


def test_per_domain_batch_norm_without_a_batch_norm_layer_is_a_clear_error(write_config, cli, tmp_path):
    path = write_config(tiny_config(train={"batch_norm": "per_domain"}))
    code, _, err = cli("train", "-c", path, "--out", tmp_path / "run")
    assert code != 0 and "model.bottleneck" in one_line_error(err)
    assert not (tmp_path / "run").exists()
    code, _, err = cli("train", "-c", path, "--set", "train.batch_norm=domain", "--out", tmp_path / "run")
    assert code != 0 and "per_domain" in one_line_error(err)

"""EATA (Niu et al. 2022) and SAR (Niu et al. 2023): their filters, EATA's Fisher anchor, SAR's SAM
step and recovery, a stream run of each, and exact resume.

With ``DA_EATA_REPO`` / ``DA_SAR_REPO`` pointing at checkouts of github.com/mr-eggplant/EATA and
github.com/mr-eggplant/SAR, the stages are also run beside those repositories' own
``forward_and_adapt`` on the same network and batches, and must agree.
"""
from __future__ import annotations

import copy
import importlib.util
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from da.errors import DAError
from da.stages.eata import Eata
from da.stages.fisher import anchor_penalty, diagonal_fisher
from da.stages.sar import Sar, repo_lr
from tta_helpers import (CLASSES, attach, drive, images, logits_with_entropy, stopped_and_resumed, stream_config,
                         tiny_net)

E0 = 0.4 * math.log(CLASSES)
NO_RUN = SimpleNamespace(run=None)


def identity_stage(stage):
    stage.forward = lambda run, x: x  # the "images" are the logits
    return stage


# ------------------------------------------------------------------------------------------ EATA

def test_eata_keeps_a_sample_just_below_0_4_ln_c_and_drops_one_just_above():
    stage = identity_stage(Eata())
    below, above = logits_with_entropy(E0 - 1e-3), logits_with_entropy(E0 + 1e-3, label=1)
    updates = list(stage.adapt(NO_RUN, torch.cat([above, below])))
    assert len(updates) == 1 and stage.last["eata/reliable"] == 0.5
    h = E0 - 1e-3  # the loss: the kept sample's entropy, weighted by 1 / exp(H - E0)
    assert updates[0].loss.item() == pytest.approx(h / math.exp(h - E0), rel=1e-4)
    stage = identity_stage(Eata())
    assert list(stage.adapt(NO_RUN, above)) == [] and stage.probs is None  # no reliable sample: no update


def test_eata_redundancy_filter_drops_a_prediction_like_the_moving_average():
    stage = identity_stage(Eata())
    confident = [logits_with_entropy(0.1, label=k) for k in range(CLASSES)]
    assert len(list(stage.adapt(NO_RUN, torch.cat([confident[0], confident[0]])))) == 1
    first = stage.probs.clone()
    assert first.argmax() == 0
    assert list(stage.adapt(NO_RUN, confident[0])) == []  # cosine ~1 with the average: redundant
    assert torch.equal(stage.probs, first)
    updates = list(stage.adapt(NO_RUN, torch.cat([confident[0], confident[3]])))
    assert len(updates) == 1 and stage.last["eata/selected"] == 0.5
    assert torch.allclose(stage.probs, 0.9 * first + 0.1 * confident[3].softmax(1)[0], rtol=1e-5, atol=1e-7)


def test_eata_fisher_is_the_mean_squared_gradient_and_its_penalty_is_zero_at_the_source_only():
    net = tiny_net()
    stage = Eata(batch_size=4)
    attach(stage, net)
    batches = [images(4, seed) for seed in range(3)]
    fisher = diagonal_fisher(stage.params, net, batches)
    by_hand = [torch.zeros_like(p) for p in stage.params]
    for x in batches:
        logits = net(x)
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, logits.argmax(1)), stage.params)
        by_hand = [h + g ** 2 for h, g in zip(by_hand, grads)]
    for f, h in zip(fisher, by_hand):
        assert torch.allclose(f, h / 3, rtol=1e-5, atol=1e-7)
    anchor = [p.detach().clone() for p in stage.params]
    assert anchor_penalty(stage.params, fisher, anchor, 1.0).item() == 0.0
    with torch.no_grad():
        stage.params[0].add_(0.1)
    assert anchor_penalty(stage.params, fisher, anchor, 2000.0).item() > 0


def test_eata_takes_its_fisher_from_the_first_source_validation_images_once_and_eta_takes_none():
    from da.data.domain import Split

    net = tiny_net()
    stage = Eata(batch_size=4, fisher_size=10)
    ctx = attach(stage, net)
    source_val = Split(images(12, 7), torch.zeros(12, dtype=torch.long))
    ctx.run.domains, ctx.run.device = SimpleNamespace(source_val=source_val), torch.device("cpu")
    stage.start(ctx)
    batches = [source_val.x[:4], source_val.x[4:8], source_val.x[8:10]]
    for f, g in zip(stage.fisher, diagonal_fisher(stage.params, net, batches)):
        assert torch.equal(f, g)
    assert all(torch.equal(a, p) for a, p in zip(stage.anchor, stage.params))
    fisher = stage.fisher
    stage.start(ctx)  # a resumed session: the checkpoint's Fisher stays
    assert stage.fisher is fisher
    eta = Eata(fisher_alpha=0.0)
    eta.start(ctx)
    assert eta.fisher is None and eta.anchor is None


def test_eata_adds_the_fisher_penalty_to_its_loss():
    net = tiny_net(confidence=20.0)
    stage = Eata(lr=0.5, d_margin=1.0)
    ctx = attach(stage, net)
    stage.fisher = [torch.ones_like(p) for p in stage.params]
    stage.anchor = [p.detach().clone() for p in stage.params]
    _, applied = drive(stage, ctx, images(16, 0))
    assert applied == 1 and stage.last["eata/fisher_penalty"].item() == 0.0  # at the source weights
    drive(stage, ctx, images(16, 1))
    assert stage.last["eata/fisher_penalty"].item() > 0


def test_eata_refuses_a_bad_setting_naming_it():
    with pytest.raises(DAError, match="d_margin"):
        Eata(d_margin=0.0)


# ------------------------------------------------------------------------------------------- SAR

def test_sar_learning_rate_follows_the_repository_rule():
    assert repo_lr(64) == 0.00025 and repo_lr(32) == 0.00025
    assert repo_lr(16) == pytest.approx(0.00025 / 64 * 16 * 2)
    assert repo_lr(1) == pytest.approx(0.00025 / 64 * 2 * 2)
    assert Sar(batch_size=8).learning_rate() == repo_lr(8) and Sar(lr=0.1).learning_rate() == 0.1


def test_sar_climbs_rho_with_sam_and_comes_back_before_its_step():
    net = tiny_net(confidence=20.0)
    stage = Sar(reset_constant=0.0)
    ctx = attach(stage, net, lr=0.0)  # no base step: the weights must come back bitwise
    w0 = [p.detach().clone() for p in stage.params]
    moved = []

    def seen(update):
        moved.append(torch.sqrt(sum(((p.detach() - w) ** 2).sum() for p, w in zip(stage.params, w0))).item())

    _, applied = drive(stage, ctx, images(16, 0), seen)
    assert applied == 2 and moved[0] == pytest.approx(0.05, rel=1e-4) and moved[1] == 0.0
    assert all(torch.equal(p, w) for p, w in zip(stage.params, w0))


def test_sar_recovery_restores_the_source_model_and_optimizer_bitwise():
    net = tiny_net(norm="gn", confidence=20.0)
    stage = Sar(lr=1.0, reset_constant=0.0)
    ctx = attach(stage, net)
    source = {k: v.clone() for k, v in net.state_dict().items()}
    drive(stage, ctx, images(16, 0))
    assert not all(torch.equal(v, source[k]) for k, v in net.state_dict().items())  # it adapted
    assert ctx.optimizers["main"].state_dict()["state"]  # momentum buffers
    stage.reset_constant = 10.0  # above any entropy of 10 classes: the next batch recovers
    drive(stage, ctx, images(16, 1))
    assert stage.recoveries == 1 and stage.ema is not None  # the average outlives the reset, as the repo's
    assert all(torch.equal(v, source[k]) for k, v in net.state_dict().items())
    assert ctx.optimizers["main"].state_dict()["state"] == {}


def test_sar_refuses_a_negative_rho_naming_it():
    with pytest.raises(DAError, match="rho"):
        Sar(rho=-0.1)


# ---------------------------------------------------------------------------- streams and resume

@pytest.mark.parametrize("stage", [{"name": "eata", "batch_size": 32, "lr": 0.05},
                                   {"name": "sar", "batch_size": 32, "lr": 0.05}], ids=["eata", "sar"])
def test_a_stopped_stream_resumes_to_the_same_online_accuracy(stage, tmp_path, monkeypatch):
    whole, resumed = stopped_and_resumed(stream_config(stage), tmp_path, monkeypatch, stage["name"], 2)
    assert whole["online_images"] == 128 and 0 <= whole["online_acc"] <= 1
    assert resumed == whole


def test_sar_takes_one_image_at_a_time_on_group_norm_only():
    from da.composition import build_config

    build_config(stream_config({"name": "sar", "batch_size": 1}, backbone="lenet_gn"))
    with pytest.raises(DAError, match="lenet_gn"):
        build_config(stream_config({"name": "sar", "batch_size": 1}))


# -------------------------------------------------------------------- the authors' repositories

def reference(variable: str, module: str):
    root = os.environ.get(variable)
    if not root or not (Path(root) / f"{module}.py").is_file():
        pytest.skip(f"{variable} does not point at a checkout with {module}.py")
    spec = importlib.util.spec_from_file_location(f"reference_{module}", Path(root) / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def test_eata_matches_the_eata_repository():
    eata = reference("DA_EATA_REPO", "eata")
    theirs = eata.configure_model(tiny_net(confidence=8.0))
    ours = tiny_net(confidence=8.0)
    stage = Eata(lr=0.05)
    ctx = attach(stage, ours)
    stage.fisher = diagonal_fisher(stage.params, ours, [images(8, 100 + k) for k in range(3)])
    stage.anchor = [p.detach().clone() for p in stage.params]
    params, names = eata.collect_params(theirs)
    fishers = {n: [f.clone(), a.clone()] for n, f, a in zip(names, stage.fisher, stage.anchor)}
    model = eata.EATA(theirs, torch.optim.SGD(params, 0.05, momentum=0.9), fishers, 1.0, e_margin=E0, d_margin=0.4)
    for k in range(6):
        x = images(16, k)
        expected = model(x)
        logits, _ = drive(stage, ctx, x)
        assert torch.equal(logits, expected)
        assert torch.equal(stage.probs, model.current_model_probs)
    assert 0 < model.num_samples_update_2 < model.num_samples_update_1  # both filters at work


@pytest.mark.parametrize("confidence,lr,recovers", [(4.0, 0.05, False), (16.0, 2.0, True)],
                         ids=["few-reliable-samples", "recovering"])
def test_sar_matches_the_sar_repository(confidence, lr, recovers, capsys):
    sar, sam = reference("DA_SAR_REPO", "sar"), reference("DA_SAR_REPO", "sam")
    theirs = sar.configure_model(tiny_net(confidence=confidence))
    ours = tiny_net(confidence=confidence)
    stage = Sar(lr=lr)
    ctx = attach(stage, ours)
    params, _ = sar.collect_params(theirs)
    optimizer = sam.SAM(params, torch.optim.SGD, lr=lr, momentum=0.9)
    model = sar.SAR(theirs, optimizer, margin_e0=E0)
    reset = model.reset

    def reset_with_the_momentum():  # the repo's reset reloads its SAM's state_dict, which holds none of
        reset()                     # SGD's: its momentum outlives the recovery; ours resets the optimizer
        optimizer.base_optimizer.state.clear()

    model.reset = reset_with_the_momentum
    for k in range(10):
        x = images(16, k)
        expected = model(x)
        logits, _ = drive(stage, ctx, x)
        assert torch.equal(logits, expected)
        assert stage.ema == model.ema
    for p, q in zip(stage.params, params):
        assert torch.equal(p, q)
    assert stage.recoveries == capsys.readouterr().out.count("reset the model") and (stage.recoveries > 0) == recovers

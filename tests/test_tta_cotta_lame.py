"""CoTTA (Wang et al. 2022) and LAME (Boudiaf et al. 2022): the test-time stages ``cotta`` and ``lame``.

CoTTA's parts are checked on a tiny model driven step by step as the loop drives a stage (its
update yielded, the optimizer stepped, the stage resumed); LAME's optimisation against values
derived by hand on four points (the reference code's licence, CC BY-NC-SA 4.0, keeps it out of this
repository); both stages in short runs on the synthetic pair, CoTTA resumed mid-stream.
"""
from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from conftest import one_line_error, tiny_config
from da.checkpoint import load_checkpoint
from da.data.tta_augment import CoTTAAugment
from da.models.test_time_norm import copy_state
from da.stages.cotta import CoTTA, predict, trained_parts
from da.stages.lame import Lame
from da.stages.laplacian import affinity, laplacian_optimization
from da.train.model import Model
from da.train.skeleton import make_optimizer
from methods_helpers import resumed_equals_uninterrupted

# ---------------------------------------------------------------- a tiny model, driven as the loop drives a stage


def tiny_run(seed: int = 0) -> SimpleNamespace:
    torch.manual_seed(seed)
    extractor = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = Model(extractor, nn.Linear(4, 3), nn.Identity())  # type: ignore[arg-type]
    return SimpleNamespace(model=model, config=SimpleNamespace(seed=0), domains=SimpleNamespace(target_test=None))


def started(stage, run: SimpleNamespace) -> tuple[SimpleNamespace, torch.optim.Optimizer]:
    """The stage as the skeleton starts it: slots filled, eval mode, its optimizer built."""
    stage.fill_slots(run, fresh=True)
    for part in run.model.modules():
        part.eval()
    optimizer, _ = make_optimizer(stage.optimizers(run, 0)["main"], stage.lr, stage.settings(run))
    return SimpleNamespace(run=run), optimizer


def adapt_step(stage, ctx, optimizer, x: Tensor, after_step=None) -> Tensor:
    """One batch: the update the stage yields applied, ``after_step()`` called, then the stage's own end."""
    steps = stage.adapt(ctx, x)
    update = next(steps)
    optimizer.zero_grad()
    update.loss.backward()
    optimizer.step()
    if after_step is not None:
        after_step()
    with pytest.raises(StopIteration) as stop:
        next(steps)
    return stop.value.value


def params(model: Model) -> list[Tensor]:
    return [p.detach().clone() for part in trained_parts(model).values() for p in part.parameters()]


def batch(seed: int = 1, n: int = 8) -> Tensor:
    return torch.randn(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- CoTTA


def test_cotta_teacher_is_the_ema_of_the_student_with_its_alpha():
    stage = CoTTA(mt_alpha=0.9, rst=0.0, ap=0.0)
    run = tiny_run()
    ctx, optimizer = started(stage, run)
    teacher_before = params(stage.teacher)
    seen = {}
    adapt_step(stage, ctx, optimizer, batch(), after_step=lambda: seen.update(student=params(run.model)))
    for t0, s, t in zip(teacher_before, seen["student"], params(stage.teacher)):
        assert torch.allclose(t, 0.9 * t0 + 0.1 * s, atol=1e-7)
    assert any(not torch.equal(t0, t) for t0, t in zip(teacher_before, params(stage.teacher)))


@pytest.mark.parametrize("rst", [0.0, 1.0])
def test_stochastic_restore_with_rst_1_returns_the_source_weights_and_with_0_changes_nothing(rst):
    stage = CoTTA(rst=rst, ap=0.0, lr=0.1)
    run = tiny_run()
    ctx, optimizer = started(stage, run)
    source = params(run.model)
    seen = {}
    adapt_step(stage, ctx, optimizer, batch(), after_step=lambda: seen.update(stepped=params(run.model)))
    assert any(not torch.equal(a, b) for a, b in zip(source, seen["stepped"]))  # the step moved the student
    expected = source if rst == 1.0 else seen["stepped"]
    assert all(torch.equal(a, b) for a, b in zip(expected, params(run.model)))
    assert all(torch.equal(a, b) for a, b in zip(source, params(stage.anchor)))  # the anchor never moves


@pytest.mark.parametrize("above", [True, False])
def test_the_augmentation_average_is_used_exactly_when_the_anchor_is_below_ap(above):
    run = tiny_run()
    x = batch()
    probe = CoTTA()
    started(probe, run)
    with torch.no_grad():
        confidence = float(predict(probe.anchor, x).softmax(1).max(1).values.mean())
    stage = CoTTA(ap=confidence + (1e-4 if above else -1e-4), n_augmentations=3)
    ctx, _ = started(stage, tiny_run())
    drawn = stage.generator.get_state()
    got = stage.teacher_prediction(x)
    with torch.no_grad():
        if above:  # the same draws, from a generator of the same state
            g = torch.Generator()
            g.set_state(drawn)
            augment = CoTTAAugment(g)
            expected = torch.stack([predict(stage.teacher, augment(x)) for _ in range(3)]).mean(0)
        else:
            expected = predict(stage.teacher, x)
            assert torch.equal(stage.generator.get_state(), drawn)  # nothing drawn
    assert torch.allclose(got, expected, atol=1e-6)
    assert stage.last["cotta/augmented"] == float(above)


def test_the_scored_prediction_is_the_teachers_before_the_update():
    stage = CoTTA(ap=0.0, lr=0.05, rst=0.0, mt_alpha=0.5)
    run = tiny_run()
    ctx, optimizer = started(stage, run)
    adapt_step(stage, ctx, optimizer, batch(1))  # the student and the teacher part ways
    x = batch(2)
    teacher = copy.deepcopy(stage.teacher)
    with torch.no_grad():
        before, student = predict(teacher, x), predict(run.model, x)
    scored = adapt_step(stage, ctx, optimizer, x)
    with torch.no_grad():
        after = predict(stage.teacher, x)
    assert torch.equal(scored, before)
    assert not torch.allclose(scored, student) and not torch.allclose(scored, after)


def test_cotta_augmentation_keeps_shape_and_pixel_range_and_repeats_with_its_seed():
    x = torch.rand(5, 3, 12, 12) * 2 - 1
    a = CoTTAAugment(torch.Generator().manual_seed(3), hflip=0.5)(x)
    b = CoTTAAugment(torch.Generator().manual_seed(3), hflip=0.5)(x)
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= -1 - 1e-6 and a.max() <= 1 + 1e-6 and not torch.allclose(a, x, atol=0.05)


# ---------------------------------------------------------------- LAME


def test_knn_affinity_and_one_iteration_match_values_derived_by_hand():
    # Four unit vectors: a's nearest is b (|a-b| = sqrt .4), b's is a, c's is b (sqrt .8 < sqrt 2 to a),
    # d's is c (sqrt 2 < sqrt 3.6 to b); symmetrised: W_ab = 1, W_bc = W_cd = 1/2.
    x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    hand = torch.tensor([[0, 1, 0, 0], [1, 0, 0.5, 0], [0, 0.5, 0, 0.5], [0, 0, 0.5, 0]])
    w = affinity(x, "knn", 1)
    assert torch.equal(w, torch.tensor([[0.0, 1, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]))
    assert torch.equal(0.5 * (w + w.t()), hand)
    p = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.5, 0.5]])
    stage = Lame(knn=1, max_steps=1)
    y = stage.correct(p.log(), x)
    # one step from y = p: y_i proportional to p_i * exp(sum_j W_ij p_j), e.g. b: 0.4 e^(0.9 + 0.15) vs 0.6 e^(0.1 + 0.35)
    b0, b1 = 0.4 * math.exp(0.9 + 0.5 * 0.3), 0.6 * math.exp(0.1 + 0.5 * 0.7)
    assert y[1, 0].item() == pytest.approx(b0 / (b0 + b1), abs=1e-6)
    expected = p * torch.exp(hand @ p)
    assert torch.allclose(y, expected / expected.sum(1, keepdim=True), atol=1e-6)


def test_rbf_and_linear_affinities_match_values_derived_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # distances sqrt 2, 2, sqrt 2
    # rbf, knn 2: the 2nd smallest distance of each row (itself first) is sqrt 2, so sigma = sqrt 2
    e = lambda d2: math.exp(-d2 / 4)
    rbf = torch.tensor([[1, e(2), e(4)], [e(2), 1, e(2)], [e(4), e(2), 1]])
    assert torch.allclose(affinity(x, "rbf", 2), rbf, atol=1e-6)
    assert torch.equal(affinity(x, "linear", 5), torch.tensor([[1.0, 0, -1], [0, 1, 0], [-1, 0, 1]]))


def fixed_point(la: float, lb: float) -> float:
    """Class-0 probability of point a of a mutual pair at LAME's fixed point, two classes, lambda 1:
    y_a = s(la + 2 y_b - 1), y_b = s(lb + 2 y_a - 1) (s the sigmoid, l the logit of p's class 0):
    a contraction in y_a (slope <= 1/4), solved by bisection."""
    s = lambda v: 1 / (1 + math.exp(-v))
    g = lambda y: s(la + 2 * s(lb + 2 * y - 1) - 1) - y
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if g(mid) > 0 else (low, mid)
    return (low + high) / 2


def test_lame_converges_to_the_fixed_point_derived_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])  # mutual pairs (a, b) and (c, d)
    p = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.5, 0.5]])
    y, iterations = laplacian_optimization(-torch.log(p + 1e-10), affinity(x, "knn", 1))
    logit = [math.log(q / (1 - q)) for q in p[:, 0].tolist()]
    expected = [fixed_point(logit[0], logit[1]), fixed_point(logit[1], logit[0]),
                fixed_point(logit[2], logit[3]), fixed_point(logit[3], logit[2])]
    assert 3 <= iterations < 100
    assert y[:, 0].tolist() == pytest.approx(expected, abs=1e-5)
    assert y[1].argmax() == 0  # b, unsure, follows its confident neighbour a


def test_lame_returns_the_input_prediction_when_the_affinity_is_zero():
    p = torch.softmax(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), 1)
    y, iterations = laplacian_optimization(-torch.log(p + 1e-10), torch.zeros(6, 6))
    assert torch.allclose(y, p, atol=1e-8) and iterations == 3  # constant energy: stops at the first test (i = 2)
    assert laplacian_optimization(-torch.log(p + 1e-10), torch.ones(6, 6), max_steps=1)[1] == 1
    logits = torch.randn(1, 4)  # one image: no neighbour, the source prediction
    assert torch.allclose(Lame().correct(logits, torch.randn(1, 8)), logits.softmax(1), atol=1e-8)


# ---------------------------------------------------------------- runs


def stream_config(stage: dict) -> dict:
    return {**tiny_config(), "adapter": {"name": "source_only"}, "model": {"backbone": "lenet_bn"},
            "stages": ["pretrain", {"batch_size": 32, **stage}]}


def test_lame_run_scores_the_stream_and_changes_no_parameter(tmp_path, monkeypatch, cli, write_config):
    seen = {}
    begin = Lame.begin

    def snapshot(self, ctx):
        seen["model"] = {name: copy_state(part) for name, part in ctx.run.model.parts().items()}
        begin(self, ctx)

    monkeypatch.setattr(Lame, "begin", snapshot)
    code, _, err = cli("train", "-c", write_config(stream_config({"name": "lame"})), "--out", tmp_path / "run", "-q")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert 0 <= summary["online_acc"] <= 1 and summary["online_images"] > 0
    final = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    for name, state in seen["model"].items():
        assert all(torch.equal(value, final[name][key]) for key, value in state.items()), name


def test_cotta_run_scores_the_stream(tmp_path, cli, write_config):
    cfg = stream_config({"name": "cotta", "n_augmentations": 2, "ap": 1.0})
    code, _, err = cli("train", "-c", write_config(cfg), "--out", tmp_path / "run", "-q")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert 0 <= summary["online_acc"] <= 1 and summary["online_images"] > 0


def test_episodic_cotta_without_augmentation_scores_as_test_batch_norm(tmp_path):
    # each batch from the source teacher (dropout off), which normalises with the batch's statistics:
    # stage norm's prediction; a source model pretrained 2 steps leaves room for mistakes
    from da.composition import build_config, train

    runs = {name: {**stream_config(stage), "pretrain": {"steps": 2, "batch_size": 16}} for name, stage in
            (("cotta", {"name": "cotta", "reset": "episodic", "ap": 0.0, "lr": 0.1}), ("norm", {"name": "norm"}))}
    scores = {name: train(build_config(cfg), tmp_path / name, show_progress=False)["online_acc"]
              for name, cfg in runs.items() if not (tmp_path / name).mkdir()}
    assert scores["cotta"] == scores["norm"] and 0.2 < scores["norm"] < 0.9


def test_a_resumed_cotta_stream_scores_as_an_uninterrupted_one(tmp_path, monkeypatch):
    # always augmenting and restoring: the stage's generator must resume exactly
    cfg = stream_config({"name": "cotta", "n_augmentations": 2, "ap": 1.0, "rst": 0.1})
    resumed_equals_uninterrupted(cfg, tmp_path, monkeypatch, "cotta", 2)
    whole, cut = (load_checkpoint(tmp_path / d / "checkpoint.pt")["stage_state"]["method"] for d in ("whole", "stopped"))
    assert torch.equal(whole["generator"], cut["generator"])
    for name, state in whole["teacher"].items():
        assert all(torch.equal(v, cut["teacher"][name][k]) for k, v in state.items())


@pytest.mark.parametrize("stage,message", [
    ({"name": "cotta", "rst": 2.0}, "stage cotta: rst must be in [0, 1]"),
    ({"name": "cotta", "n_augmentations": 0}, "stage cotta: n_augmentations must be >= 1"),
    ({"name": "lame", "knn": 0}, "stage lame: knn and max_steps must be >= 1"),
])
def test_a_bad_setting_gets_one_line_naming_it(stage, message, tmp_path, cli, write_config):
    code, _, err = cli("train", "-c", write_config(stream_config(stage)), "--out", tmp_path / "run", "-q")
    assert code != 0 and message in one_line_error(err)

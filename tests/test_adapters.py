"""Behaviour of every registered adapter, and of the pytorch-adapt layers they are built on."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import da.adapters  # noqa: F401
from da.adapters.dann import dann_schedule
from da.composition import build_adapter
from da.config import Config, AdapterConfig
from da.adapters.base import trained_by_stage
from da.registry import ADAPTERS
from da.stages.subspace import SubspaceAlignment

DIM, CLASSES, N = 64, 4, 32


def make(name: str, **kwargs):
    config = Config(adapter=AdapterConfig(name, kwargs))
    return build_adapter(config, DIM, CLASSES)


def shifted_batches(shift: float, seed: int = 0, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f_s = torch.randn(n, DIM, generator=g)
    f_t = torch.randn(n, DIM, generator=g) * (1 + shift) + shift
    return f_s, f_t


def adapter_loss(adapter, f_s, f_t, progress: float = 0.5):
    torch.manual_seed(0)  # the same head for every call
    head = nn.Linear(DIM, CLASSES)
    y = torch.arange(len(f_s)) % CLASSES
    return adapter.loss(f_s, f_t, logits_s=head(f_s), logits_t=head(f_t), y_s=y, progress=progress)


LOSSES = [n for n, cls in ADAPTERS.items() if not trained_by_stage(cls)]


@pytest.mark.parametrize("name", LOSSES)
def test_every_adapter_gives_a_finite_scalar_loss(name):
    adapter = make(name)
    f_s, f_t = shifted_batches(1.0)
    loss, scalars = adapter_loss(adapter, f_s, f_t)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert all(math.isfinite(float(v)) for v in scalars.values())


@pytest.mark.parametrize("name", [n for n, cls in ADAPTERS.items() if cls.aligns_by_gradient])
def test_gradient_based_adapters_send_a_gradient_to_both_domains(name):
    """Both domains unless the adapter declares fewer in ``gradient_domains``; then exactly those."""
    adapter = make(name)
    f_s, f_t = shifted_batches(1.0)
    f_s.requires_grad_(True)
    f_t.requires_grad_(True)
    loss, _ = adapter_loss(adapter, f_s, f_t, progress=0.7)
    loss.backward()
    assert adapter.gradient_domains, "a gradient-based adapter must reach at least one domain"
    for domain, f in (("source", f_s), ("target", f_t)):
        reached = f.grad is not None and bool(f.grad.abs().sum() > 0)
        if domain in adapter.gradient_domains:
            assert reached, f"no gradient reaches the {domain} features"
        else:
            assert not reached, f"the {domain} features get a gradient that gradient_domains does not declare"


def test_gradient_reversal_flips_sign_and_scales_by_weight():
    from pytorch_adapt.layers import GradientReversal

    x = torch.randn(5, 3, requires_grad=True)
    grl = GradientReversal(weight=0.3)
    out = grl(x)
    assert torch.equal(out, x)
    upstream = torch.randn(5, 3)
    out.backward(upstream)
    assert torch.allclose(x.grad, -0.3 * upstream)


def test_dann_reversal_weight_follows_ganin_schedule_and_reaches_features_reversed():
    assert dann_schedule(0.0) == 0.0
    assert dann_schedule(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert dann_schedule(0.2) < dann_schedule(0.5) < dann_schedule(0.9)
    adapter = make("dann")
    f_s, f_t = shifted_batches(2.0)
    f_s.requires_grad_(True)
    loss, scalars = adapter_loss(adapter, f_s, f_t, progress=0.5)
    assert float(scalars["reversal_weight"]) == pytest.approx(dann_schedule(0.5))
    assert 0.0 <= float(scalars["discriminator_acc"]) <= 1.0
    # The features receive minus the discriminator's gradient, scaled by the reversal weight.
    (g_reversed,) = torch.autograd.grad(loss, f_s)
    feats = torch.cat([f_s, f_t]).detach().requires_grad_(True)
    scores = adapter.discriminator(feats).squeeze(1)
    labels = torch.cat([torch.ones(N), torch.zeros(N)])
    direct = torch.nn.functional.binary_cross_entropy_with_logits(scores, labels)
    (g_direct,) = torch.autograd.grad(direct, feats)
    assert torch.allclose(g_reversed, -dann_schedule(0.5) * g_direct[:N], atol=1e-6)


@pytest.mark.parametrize("name", ["mmd", "coral", "jan"])
def test_discrepancy_is_zero_for_identical_batches_and_grows_with_shift(name):
    adapter = make(name)
    f_s, _ = shifted_batches(0.0)
    same, _ = adapter_loss(adapter, f_s, f_s.clone())
    assert abs(float(same.detach())) < 1e-5
    values = [float(adapter_loss(adapter, *shifted_batches(s, n=128))[0].detach()) for s in (0.25, 1.0, 3.0)]
    assert values[0] < values[1] < values[2], values
    assert values[0] > 0


def test_subspace_alignment_improves_target_accuracy_over_no_alignment():
    """A linear classifier trained on source features transfers better after subspace alignment."""
    g = torch.Generator().manual_seed(0)
    per_class = 150
    y = torch.arange(CLASSES).repeat_interleave(per_class)
    # Class means in a 2-d plane with unequal spread, so PCA finds the plane's axes in both domains.
    means = torch.zeros(CLASSES, DIM)
    means[:, 0] = torch.tensor([-6.0, -2.0, 2.0, 6.0])
    means[:, 1] = torch.tensor([3.0, -3.0, 3.0, -3.0])
    f_s = means[y] + 0.5 * torch.randn(len(y), DIM, generator=g)
    # The known shift: the class plane tilted by 30 degrees out of itself, and an offset.
    tilt = torch.eye(DIM)
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    for a, b in ((0, 2), (1, 3)):
        tilt[a, a], tilt[a, b], tilt[b, a], tilt[b, b] = c, s, -s, c
    f_t = (means[y] + 0.5 * torch.randn(len(y), DIM, generator=g)) @ tilt + 2.0

    def target_accuracy(transform) -> float:
        """A linear head fitted on source by least squares onto one-hot labels, scored on target."""
        z_s = transform(f_s, "source")
        z_t = transform(f_t, "target")
        ones = lambda z: torch.cat([z, torch.ones(len(z), 1)], 1)
        w = torch.linalg.lstsq(ones(z_s), nn.functional.one_hot(y, CLASSES).float()).solution
        return (ones(z_t) @ w).argmax(1).eq(y).float().mean().item()

    plain = target_accuracy(lambda f, domain: f)
    aligned = SubspaceAlignment(DIM, dims=2)
    aligned.fit(f_s, f_t)
    with_alignment = target_accuracy(aligned)
    assert with_alignment > plain + 0.2, (plain, with_alignment)


def test_subspace_is_the_closed_form_of_fernando_2013():
    adapter = SubspaceAlignment(DIM, dims=3)
    f_s, f_t = shifted_batches(1.0, n=100)
    adapter.fit(f_s, f_t)
    p_s = torch.linalg.svd(f_s - f_s.mean(0), full_matrices=False)[2][:3].T
    p_t = torch.linalg.svd(f_t - f_t.mean(0), full_matrices=False)[2][:3].T
    target = adapter(f_t, "target")
    expected_t = (f_t - f_t.mean(0)) @ p_t
    signs = torch.sign((target * expected_t).sum(0))  # PCA directions are defined up to sign
    assert torch.allclose(target, expected_t * signs, atol=1e-4)
    expected_s = (f_s - f_s.mean(0)) @ p_s @ (p_s.T @ p_t)
    assert torch.allclose(adapter(f_s, "source"), expected_s * signs, atol=1e-4)


def test_standardized_subspace_alignment_is_blind_to_each_domains_feature_scales():
    """With ``standardize`` each domain is z-scored before its PCA (libTLDA's suba): rescaling some
    dimensions of one domain changes nothing; without it the same rescaling moves the features."""
    f_s, f_t = shifted_batches(1.0, n=100)
    scales = torch.ones(DIM)
    scales[:8] = 50.0
    outputs = {}
    for standardize in (True, False):
        for name, target in (("plain", f_t), ("rescaled", f_t * scales)):
            adapter = SubspaceAlignment(DIM, dims=3, standardize=standardize)
            adapter.fit(f_s, target)
            z_t = adapter(target, "target")
            signs = torch.sign(z_t[0])  # PCA directions are defined up to sign
            outputs[standardize, name] = (adapter(f_s, "source") * signs, z_t * signs)
    for a, b in zip(outputs[True, "plain"], outputs[True, "rescaled"]):
        assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(outputs[False, "plain"][1], outputs[False, "rescaled"][1], atol=1e-2)
    z = (f_t - f_t.mean(0)) / f_t.std(0)
    p_t = torch.linalg.svd(z, full_matrices=False)[2][:3].T
    expected, got = z @ p_t, outputs[True, "plain"][1]
    assert torch.allclose(got, expected * torch.sign((got * expected).sum(0)), atol=1e-4)


def test_jan_sees_features_and_predictions_paired_differently_where_per_layer_mmd_sees_nothing():
    """The same features and the same predictions in both domains, but paired differently: DAN's
    MMD of each layer on its own is 0, JAN's joint MMD is not (Long et al. 2017, sec. 4)."""
    g = torch.Generator().manual_seed(0)
    f = torch.randn(N, DIM, generator=g)
    logits = 3 * torch.randn(N, CLASSES, generator=g)
    paired_otherwise = logits[torch.randperm(N, generator=g)]
    kw = dict(logits_s=logits, logits_t=paired_otherwise, y_s=torch.zeros(N, dtype=torch.long), progress=0.5)
    assert abs(float(make("mmd", layer="both").loss(f, f.clone(), **kw)[0])) < 1e-5
    assert float(make("jan").loss(f, f.clone(), **kw)[0]) > 0.01


def test_class_weighted_mmd_discounts_a_shift_in_class_proportions_alone():
    """Same classes, same features per class, but the target holds four times as many of class 0:
    plain MMD sees a shift; weighing target images by their predicted class's source / target
    frequency (Yan et al. 2017's weighted MMD, on the target side) removes most of it."""
    g = torch.Generator().manual_seed(0)
    means = 3 * torch.randn(CLASSES, DIM, generator=g)

    def batch(labels):
        return means[labels] + 0.5 * torch.randn(len(labels), DIM, generator=g), 10.0 * nn.functional.one_hot(labels, CLASSES)

    y_s = torch.arange(4 * N) % CLASSES
    y_t = torch.cat([torch.zeros(2 * N, dtype=torch.long), torch.arange(2 * N) % (CLASSES - 1) + 1])
    plain, weighted = make("mmd", layer="features"), make("mmd", layer="features", class_weights="target",
                                                          max_class_weight=4.0, prior_momentum=0.5)
    for _ in range(10):  # the running class frequencies settle
        (f_s, l_s), (f_t, l_t) = batch(y_s), batch(y_t)
        kw = dict(logits_s=l_s, logits_t=l_t, y_s=y_s, progress=0.5)
        shift, corrected = float(plain.loss(f_s, f_t, **kw)[0]), float(weighted.loss(f_s, f_t, **kw)[0])
    assert corrected < 0.25 * shift, (corrected, shift)
    assert weighted.prior_t[0] == pytest.approx(0.5, abs=0.01)  # the target's share of class 0


def test_class_weights_need_the_biased_estimate():
    from da.errors import DAError

    with pytest.raises(DAError, match="class_weights: target needs estimator: biased"):
        make("mmd", class_weights="target", estimator="linear")


@pytest.mark.slow  # among the longest of the default suite (kept for CI's slow pass)
def test_class_weighted_mmd_resumes_its_class_frequencies_exactly(tmp_path, monkeypatch):
    """The running class frequencies are checkpointed: a run stopped midway and resumed ends as
    one that never stopped (they would restart from uniform otherwise)."""
    from conftest import stopped_then_resumed, tiny_config
    from da.composition import build_config, train
    from da.train import TIMING_FIELDS

    cfg = tiny_config(train={"steps": 10, "eval_every": 5, "checkpoint_every": 5})
    cfg["adapter"] = {"name": "mmd", "class_weights": "target", "prior_momentum": 0.5}
    config = build_config(cfg)
    (tmp_path / "ref").mkdir()
    reference = train(config, tmp_path / "ref", show_progress=False)
    resumed = stopped_then_resumed(config, tmp_path / "cut", monkeypatch, 4)
    assert resumed == {k: v for k, v in reference.items() if k not in TIMING_FIELDS}
    weights = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["model"]["adapter"]
    assert not torch.allclose(weights["prior_t"], torch.full_like(weights["prior_t"], 1 / len(weights["prior_t"])))

"""CDAN+E (Long et al. 2018): the conditioning maps, entropy weights, and the reversed gradient."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT
from da.adapters.cdan import CDAN, entropy_weights, multilinear_map
from da.adapters.dann import dann_schedule
from da.composition import load_config


def batches(feature_dim: int, num_classes: int, n: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    f_s, f_t = torch.randn(n, feature_dim, generator=g), torch.randn(n, feature_dim, generator=g) + 1.0
    logits_s, logits_t = torch.randn(n, num_classes, generator=g), torch.randn(n, num_classes, generator=g)
    return f_s, f_t, logits_s, logits_t


def test_multilinear_map_is_the_per_sample_outer_product():
    f = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    g = torch.tensor([[0.25, 0.75], [0.9, 0.1]])
    out = multilinear_map(f, g)
    assert out.shape == (2, 6)
    for n in range(2):
        assert torch.allclose(out[n], torch.outer(g[n], f[n]).flatten())
    adapter = CDAN(feature_dim=3, num_classes=2)
    assert adapter.randomized is None and adapter.discriminator[0].in_features == 6
    assert torch.allclose(adapter.condition(f, g), out)


@pytest.mark.parametrize("feature_dim,num_classes,randomized,expected", [
    (64, 4, None, False), (512, 8, None, False),  # 4096: still the full map
    (500, 10, None, True), (513, 8, None, True),  # above 4096: randomized
    (64, 4, True, True), (500, 10, False, False),  # asked for explicitly
])
def test_randomized_map_above_4096_dims_or_when_asked(feature_dim, num_classes, randomized, expected):
    adapter = CDAN(feature_dim=feature_dim, num_classes=num_classes, hidden=8, randomized=randomized)
    assert (adapter.randomized is not None) == expected
    width = 1024 if expected else feature_dim * num_classes
    assert adapter.discriminator[0].in_features == width


def test_randomized_map_is_the_scaled_product_of_fixed_gaussian_projections():
    torch.manual_seed(0)
    adapter = CDAN(feature_dim=500, num_classes=10, hidden=8, randomized_dim=256)
    f, _, logits, _ = batches(500, 10, n=4)
    g = logits.softmax(1)
    out = adapter.condition(f, g)
    assert out.shape == (4, 256)
    state = adapter.state_dict()
    r_f, r_g = state["randomized.rand_mat0"], state["randomized.rand_mat1"]
    assert r_f.shape == (500, 256) and r_g.shape == (10, 256)
    assert torch.allclose(out, (f @ r_f) * (g @ r_g) / math.sqrt(256), atol=1e-5)
    # Buffers: fixed by the seed, and a checkpoint restores them into an adapter built under another seed.
    torch.manual_seed(0)
    same_seed = CDAN(feature_dim=500, num_classes=10, hidden=8, randomized_dim=256)
    assert torch.equal(same_seed.state_dict()["randomized.rand_mat0"], r_f)
    torch.manual_seed(1)
    other = CDAN(feature_dim=500, num_classes=10, hidden=8, randomized_dim=256)
    assert not torch.equal(other.condition(f, g), out)
    other.load_state_dict(state)
    assert torch.equal(other.condition(f, g), out)


def test_randomized_dim_must_be_positive():
    with pytest.raises(ValueError, match="randomized_dim"):
        CDAN(feature_dim=500, num_classes=10, randomized_dim=0)


def test_entropy_weights_favour_confident_samples_and_sum_to_one_per_domain():
    logits = torch.tensor([[8.0, 0.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # confident -> uniform
    w = entropy_weights(logits)
    assert w[0] > w[1] > w[2]
    assert float(w.sum()) == pytest.approx(1.0)
    h = -(logits.softmax(1) * logits.log_softmax(1)).sum(1)
    assert torch.allclose(w, (1 + torch.exp(-h)) / (1 + torch.exp(-h)).sum())

    # In the loss: with equal confidence everywhere (and equal batch sizes) the weighting
    # is uniform, so it gives the plain mean of the per-sample losses, as entropy=False does.
    torch.manual_seed(0)
    adapter = CDAN(feature_dim=8, num_classes=3, hidden=8)
    f_s, f_t, _, _ = batches(8, 3, n=6)
    same = torch.zeros(6, 3)
    weighted, _ = adapter.loss(f_s, f_t, logits_s=same, logits_t=same, y_s=None, progress=0.5)
    adapter.entropy = False
    plain, _ = adapter.loss(f_s, f_t, logits_s=same, logits_t=same, y_s=None, progress=0.5)
    assert weighted.item() == pytest.approx(plain.item(), rel=1e-6)


def test_entropy_conditioned_loss_is_the_per_domain_weighted_bce():
    torch.manual_seed(0)
    adapter = CDAN(feature_dim=8, num_classes=3, hidden=8)
    f_s, f_t, logits_s, logits_t = batches(8, 3, n=6)
    loss, scalars = adapter.loss(f_s, f_t, logits_s=logits_s, logits_t=logits_t, y_s=None, progress=0.3)
    g = torch.cat([logits_s, logits_t]).softmax(1)
    scores = adapter.discriminator(multilinear_map(torch.cat([f_s, f_t]), g)).squeeze(1)
    bce = F.binary_cross_entropy_with_logits(scores, torch.cat([torch.ones(6), torch.zeros(6)]), reduction="none")
    expected = 0.5 * ((entropy_weights(logits_s) * bce[:6]).sum() + (entropy_weights(logits_t) * bce[6:]).sum())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(scalars) == {"domain_loss", "reversal_weight", "discriminator_acc"}
    assert float(scalars["reversal_weight"]) == pytest.approx(dann_schedule(0.3))


@pytest.mark.parametrize("feature_dim,num_classes", [(8, 3), (500, 10)], ids=["multilinear", "randomized"])
def test_reversed_gradient_reaches_both_domains_and_not_the_predictions(feature_dim, num_classes):
    torch.manual_seed(0)
    adapter = CDAN(feature_dim=feature_dim, num_classes=num_classes, hidden=16, entropy=False)
    f_s, f_t, logits_s, logits_t = batches(feature_dim, num_classes)
    for t in (f_s, f_t, logits_s, logits_t):
        t.requires_grad_(True)
    loss, _ = adapter.loss(f_s, f_t, logits_s=logits_s, logits_t=logits_t, y_s=None, progress=0.5)
    g_s, g_t, gl_s, gl_t = torch.autograd.grad(loss, (f_s, f_t, logits_s, logits_t), allow_unused=True)
    assert g_s.abs().sum() > 0 and g_t.abs().sum() > 0
    # Predictions condition the discriminator but are detached (authors' code, TLlib).
    assert gl_s is None and gl_t is None
    # The features get minus the discriminator's gradient, scaled by the reversal weight.
    feats = torch.cat([f_s, f_t]).detach().requires_grad_(True)
    g = torch.cat([logits_s, logits_t]).detach().softmax(1)
    scores = adapter.discriminator(adapter.condition(feats, g)).squeeze(1)
    direct = F.binary_cross_entropy_with_logits(scores, torch.cat([torch.ones(16), torch.zeros(16)]))
    (g_direct,) = torch.autograd.grad(direct, feats)
    assert torch.allclose(torch.cat([g_s, g_t]), -dann_schedule(0.5) * g_direct, atol=1e-6)


def test_shipped_cdan_config_follows_dann_choices():
    config = load_config(ROOT / "configs" / "mnist_usps" / "cdan.yaml")
    dann = load_config(ROOT / "configs" / "mnist_usps" / "dann.yaml")
    assert (config.name, config.adapter.name, config.adapter.kwargs) == ("cdan", "cdan", {})
    assert config.train == dann.train and config.pretrain == dann.pretrain and config.data == dann.data

"""MDD, BSP and environment label smoothing: each loss against its reference on fixed inputs.

The oracles are the few lines of the reference code, copied here with their source:
Transfer-Learning-Library (``tllib/alignment/mdd.py``, ``tllib/alignment/bsp.py``) and the ELS
authors' CDAN (github.com/yfzhang114/Environment-Label-Smoothing, ``Domain_Adaptation/dalib/adaptation/cdan.py``).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import da.adapters  # noqa: F401
from da.adapters.dann import dann_schedule
from da.adapters.label_smoothing import domain_targets
from da.composition import build_adapter
from da.config import AdapterConfig, Config
from conftest import one_line_error, tiny_config

DIM, CLASSES, N = 16, 5, 12


def make(name: str, **kwargs):
    return build_adapter(Config(adapter=AdapterConfig(name, kwargs)), DIM, CLASSES)


def batches(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    f_s, f_t = torch.randn(N, DIM, generator=g), torch.randn(N, DIM, generator=g) + 1.0
    logits_s, logits_t = torch.randn(N, CLASSES, generator=g), torch.randn(N, CLASSES, generator=g)
    return f_s, f_t, logits_s, logits_t


# --- MDD: TLlib's ClassificationMarginDisparityDiscrepancy, verbatim but for the class around it ----------
def tllib_shift_log(x, offset=1e-6):
    return torch.log(torch.clamp(x + offset, max=1.))


def tllib_mdd(y_s, y_s_adv, y_t, y_t_adv, margin=4.):
    def source_discrepancy(y, y_adv):
        _, prediction = y.max(dim=1)
        return F.cross_entropy(y_adv, prediction, reduction='none')

    def target_discrepancy(y, y_adv):
        _, prediction = y.max(dim=1)
        return -F.nll_loss(tllib_shift_log(1. - F.softmax(y_adv, dim=1)), prediction, reduction='none')

    source_loss = -margin * source_discrepancy(y_s, y_s_adv)
    target_loss = target_discrepancy(y_t, y_t_adv)
    return (source_loss + target_loss).mean()


@pytest.mark.parametrize("margin", [1.0, 4.0])
def test_mdd_loss_is_minus_tllibs_margin_disparity_discrepancy(margin):
    adapter = make("mdd", margin=margin, width=32).eval()  # eval: the adversarial head's dropout off
    f_s, f_t, logits_s, logits_t = batches()
    loss, scalars = adapter.loss(f_s, f_t, logits_s=logits_s, logits_t=logits_t, y_s=None, progress=0.5)
    adv_s, adv_t = adapter.adversarial_head(f_s), adapter.adversarial_head(f_t)
    expected = tllib_mdd(logits_s, adv_s, logits_t, adv_t, margin)  # TLlib's mdd.py: transfer_loss = -mdd(...)
    assert torch.allclose(loss, -expected, atol=1e-6)
    assert torch.allclose(scalars["disparity"], expected, atol=1e-6)


def test_mdd_head_maximises_the_discrepancy_and_the_features_minimise_it_behind_the_reversal():
    adapter = make("mdd", width=32).eval()
    f_s, f_t, logits_s, logits_t = batches(1)
    progress = 0.3
    lam = 0.1 * dann_schedule(progress)  # TLlib's reversal warms up to 0.1
    f = torch.cat([f_s, f_t]).requires_grad_(True)
    loss, _ = adapter.loss(f[:N], f[N:], logits_s=logits_s, logits_t=logits_t, y_s=None, progress=progress)
    loss.backward()
    head_grad = [p.grad.clone() for p in adapter.adversarial_head.parameters()]
    reversed_grad = f.grad.clone()

    g = torch.cat([f_s, f_t]).requires_grad_(True)  # the same discrepancy without the reversal layer
    adapter.zero_grad()
    d = tllib_mdd(logits_s, adapter.adversarial_head(g[:N]), logits_t, adapter.adversarial_head(g[N:]))
    d.backward()
    for got, p in zip(head_grad, adapter.adversarial_head.parameters()):
        assert torch.allclose(got, -p.grad, atol=1e-6), "the head descends -D: it maximises D"
    assert torch.allclose(reversed_grad, lam * g.grad, atol=1e-7), "the features descend D, scaled by the reversal"
    assert reversed_grad[:N].abs().sum() > 0 and reversed_grad[N:].abs().sum() > 0


def test_mdd_main_predictions_get_no_gradient():
    adapter = make("mdd", width=32)
    f_s, f_t, logits_s, logits_t = batches(2)
    logits_s.requires_grad_(True)
    logits_t.requires_grad_(True)
    loss, _ = adapter.loss(f_s, f_t, logits_s=logits_s, logits_t=logits_t, y_s=None, progress=0.5)
    loss.backward()
    assert logits_s.grad is None and logits_t.grad is None


# --- BSP -------------------------------------------------------------------------------------------------
def with_singular_values(values: list[float], n: int = 10, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(n, len(values), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d, len(values), generator=g, dtype=torch.float64))
    s = torch.tensor(values, dtype=torch.float64)
    return u @ torch.diag(s) @ v.T, u, s, v


def tllib_bsp(f_s, f_t):
    """TLlib's BatchSpectralPenalizationLoss.forward (k = 1)."""
    _, s_s, _ = torch.svd(f_s)
    _, s_t, _ = torch.svd(f_t)
    return torch.pow(s_s[0], 2) + torch.pow(s_t[0], 2)


def test_bsp_with_k_1_equals_tllibs_loss_times_its_weight():
    f_s, f_t, _, _ = batches()
    loss, _ = make("bsp").loss(f_s, f_t, logits_s=None, logits_t=None, y_s=None, progress=0.0)
    assert torch.allclose(loss, 1e-4 * tllib_bsp(f_s, f_t), rtol=1e-5)


@pytest.mark.parametrize("k", [1, 2])
def test_bsp_penalises_only_the_k_largest_singular_values(k):
    f_s, u_s, s_s, v_s = with_singular_values([5.0, 3.0, 2.0, 1.0])
    f_t, u_t, s_t, v_t = with_singular_values([4.0, 2.5, 1.5, 0.5], seed=1)
    f_s.requires_grad_(True)
    f_t.requires_grad_(True)
    loss, _ = make("bsp", k=k, weight=1.0).loss(f_s, f_t, logits_s=None, logits_t=None, y_s=None, progress=0.0)
    assert torch.allclose(loss, (s_s[:k] ** 2).sum() + (s_t[:k] ** 2).sum())
    loss.backward()
    for f, u, s, v in ((f_s, u_s, s_s, v_s), (f_t, u_t, s_t, v_t)):
        # d sigma_i^2 / dF = 2 sigma_i u_i v_i^T: the gradient moves the top k directions alone
        assert torch.allclose(f.grad, 2 * (u[:, :k] * s[:k]) @ v[:, :k].T, atol=1e-10)
        along = torch.einsum("ni,nd,di->i", u, f.grad, v)
        assert torch.all(along[k:].abs() < 1e-10) and torch.all(along[:k] > 0)


def test_bsp_refuses_k_below_one_in_one_line(cli, write_config):
    path = write_config(tiny_config(adapter=[{"name": "dann", "hidden": 8}, {"name": "bsp", "k": 0}]))
    code, _, err = cli("train", "-c", path, "--out", path.parent / "run")
    assert code == 2 and "k must be" in one_line_error(err)
    assert not (path.parent / "run").exists()


# --- ELS -------------------------------------------------------------------------------------------------
def test_smoothed_domain_targets_are_one_minus_eps_for_source_and_eps_for_target():
    like = torch.zeros(1)
    assert torch.equal(domain_targets(like, 3, 2, 0.1), torch.tensor([0.9, 0.9, 0.9, 0.1, 0.1]))
    assert torch.equal(domain_targets(like, 2, 2, 0.0), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert torch.equal(domain_targets(like, 1, 1, 0.5), torch.tensor([0.5, 0.5]))


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_dann_with_label_smoothing_is_the_els_authors_discriminator_loss(eps):
    adapter = make("dann", hidden=8, label_smoothing=eps).eval()
    f_s, f_t, logits_s, logits_t = batches()
    loss, _ = adapter.loss(f_s, f_t, logits_s=logits_s, logits_t=logits_t, y_s=None, progress=0.5)
    d = torch.sigmoid(adapter.discriminator(torch.cat([f_s, f_t])))
    # the ELS authors' d_label (their cdan.py), with their plain BCE on probabilities
    d_label = torch.cat((torch.ones((N, 1)) * (1 - eps), torch.ones((N, 1)) * eps))
    assert torch.allclose(loss, F.binary_cross_entropy(d, d_label), atol=1e-6)


def test_cdan_with_label_smoothing_scores_against_the_smoothed_targets():
    adapter = make("cdan", hidden=8, entropy=False, label_smoothing=0.1).eval()
    f_s, f_t, logits_s, logits_t = batches()
    loss, _ = adapter.loss(f_s, f_t, logits_s=logits_s, logits_t=logits_t, y_s=None, progress=0.5)
    g = torch.softmax(torch.cat([logits_s, logits_t]), 1)
    d = torch.sigmoid(adapter.discriminator(adapter.condition(torch.cat([f_s, f_t]), g)))
    d_label = torch.cat((torch.ones((N, 1)) * 0.9, torch.ones((N, 1)) * 0.1))
    assert torch.allclose(loss, F.binary_cross_entropy(d, d_label), atol=1e-6)


@pytest.mark.parametrize("adapter,eps", [({"name": "dann"}, 0.6), ({"name": "cdan"}, -0.1), ({"name": "adda"}, 0.7)])
def test_label_smoothing_outside_0_to_half_is_one_line_before_a_run_folder(cli, write_config, adapter, eps):
    path = write_config(tiny_config(adapter={**adapter, "label_smoothing": eps}))
    code, _, err = cli("train", "-c", path, "--out", path.parent / "run")
    assert code == 2 and "label_smoothing must be in [0, 0.5]" in one_line_error(err)
    assert not (path.parent / "run").exists()


def test_checking_the_adapter_before_a_run_draws_nothing_from_the_runs_seeded_generator():
    """preflight builds the adapter once to check its settings (a discriminator's initial weights are
    random draws): the global generator, seeded before a programmatic run's preflight, is left as it was."""
    from da.composition import build_config, preflight

    config = build_config(tiny_config(adapter={"name": "cdan", "hidden": 8}))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    preflight(config, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), before)

"""The da-plugins package (third_party/da-plugins): discovery through entry points, the CLI, one run,
and the maths of each plugin adapter's loss.

The registry-wide checks (finite loss, gradient reaching the declared domains, a run through the one
loop) cover the plugin adapters too: tests/test_adapters.py and tests/test_run.py parametrise over
every registered name, entry-point plugins included.
"""
from __future__ import annotations

import importlib.metadata
import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn
import yaml

from conftest import ROOT, one_line_error, tiny_config
from da.composition import build_adapter
from da.config import AdapterConfig, Config
from da.registry import ADAPTERS

PLUGINS = ("mcc", "bnm", "entropy", "im", "afn")
INSTALL = "pip install -e third_party/da-plugins"
DIM, K, B = 16, 4, 32


@pytest.fixture(autouse=True, scope="module")
def plugins_installed() -> None:
    try:
        importlib.metadata.distribution("da-plugins")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"the da-plugins package is not installed: run `{INSTALL}` from the repository root")


def make(name: str, **kwargs):
    adapter = build_adapter(Config(adapter=AdapterConfig(name, kwargs)), DIM, K)
    return adapter.train()


def loss_on_target_logits(adapter, logits_t: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The adapter's loss when only the target logits matter (source inputs are random)."""
    g = torch.Generator().manual_seed(0)
    f_s, f_t = torch.randn(B, DIM, generator=g), torch.randn(len(logits_t), DIM, generator=g)
    logits_s = torch.randn(B, K, generator=g)
    return adapter.loss(f_s, f_t, logits_s=logits_s, logits_t=logits_t, y_s=torch.arange(B) % K, progress=0.5)


def raw(name: str, logits_t: torch.Tensor, **kwargs) -> float:
    """The loss with weight 1."""
    return float(loss_on_target_logits(make(name, weight=1.0, **kwargs), logits_t)[0])


def confident(classes: torch.Tensor, margin: float = 30.0) -> torch.Tensor:
    """Logits that put (numerically) all the probability on ``classes``."""
    return torch.nn.functional.one_hot(classes, K).float() * margin


BALANCED = torch.arange(B) % K  # every class, equally often
COLLAPSED = torch.zeros(B, dtype=torch.long)  # everything in class 0
UNIFORM = torch.zeros(B, K)


# ---------------------------------------------------------------- discovery


def test_entry_points_declare_every_plugin_adapter_from_the_da_plugins_package():
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="da.adapters")}
    for name in PLUGINS:
        assert name in eps, f"no da.adapters entry point {name!r}; reinstall: {INSTALL}"
        assert eps[name].dist.name == "da-plugins" and eps[name].value == f"da_plugins.{name}"


def test_core_never_imports_the_plugins_and_the_registry_loads_them_on_demand():
    code = (
        "import sys\n"
        "import da, da.adapters, da.cli, da.config, da.train\n"
        "assert not [m for m in sys.modules if m.startswith('da_plugins')], 'da imported da_plugins'\n"
        "from da.registry import ADAPTERS\n"
        "cls = ADAPTERS.get('mcc')\n"
        "assert not ADAPTERS.plugin_errors, ADAPTERS.plugin_errors\n"
        # pytorch-adapt costs seconds to import: listing adapters must not pay for it.
        "assert 'pytorch_adapt' not in sys.modules, 'a plugin module imports pytorch_adapt at import time'\n"
        "print(cls.__module__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "da_plugins.mcc"
    core = [p for p in (ROOT / "da").rglob("*.py") if "da_plugins" in p.read_text()]
    assert core == [], f"the core package names da_plugins: {core}"


def test_da_adapters_lists_the_plugins_with_their_descriptions(cli):
    code, out, err = cli("adapters")
    assert code == 0 and "warning" not in err, err
    listed = dict(line.split(None, 1) for line in out.splitlines())
    for name in PLUGINS:
        description = ADAPTERS.get(name).description
        assert description and listed.get(name) == description, (name, listed.get(name))


# ---------------------------------------------------------------- through the CLI


def test_a_plugin_adapter_runs_end_to_end_through_the_cli(write_config, tmp_path, cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config()
    cfg["adapter"] = {"name": "im", "diversity_weight": 0.5}
    out = tmp_path / "run"
    code, _, err = cli("train", "-c", write_config(cfg), "--out", out, "-q")
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["adapter"] == "im" and summary["steps"] == 6
    assert 0.0 <= summary["target_test_acc"] <= 1.0
    assert yaml.safe_load((out / "config.yaml").read_text())["adapter"] == {"name": "im", "diversity_weight": 0.5}
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    assert {"adapter/im", "adapter/entropy", "adapter/diversity", "loss/adapter"} <= set(acc.Tags()["scalars"])


def test_plugin_hyperparameters_are_validated_like_built_in_ones(write_config, tmp_path, cli):
    cfg = tiny_config()
    cfg["adapter"] = {"name": "mcc"}
    path = write_config(cfg)
    code, _, err = cli("train", "-c", path, "--set", "adapter.temperature=hot", "--out", tmp_path / "a", "-q")
    assert code == 2 and "adapter.temperature must be a number" in one_line_error(err)
    code, _, err = cli("train", "-c", path, "--set", "adapter.temprature=2", "--out", tmp_path / "b", "-q")
    assert code == 2 and "did you mean adapter.temperature" in one_line_error(err)


# ---------------------------------------------------------------- the maths, one adapter at a time


def test_entropy_is_log_k_for_uniform_predictions_and_zero_for_confident_ones():
    assert raw("entropy", UNIFORM) == pytest.approx(math.log(K))
    assert raw("entropy", confident(BALANCED)) == pytest.approx(0.0, abs=1e-6)
    halfway = confident(BALANCED, margin=1.0)
    assert 0.0 < raw("entropy", halfway) < math.log(K)
    # The weight scales the loss; the logged value is the raw entropy.
    loss, scalars = loss_on_target_logits(make("entropy", weight=0.1), halfway)
    assert float(loss) == pytest.approx(0.1 * float(scalars["entropy"])) and not scalars["entropy"].requires_grad


def test_entropy_gradient_sharpens_target_predictions():
    logits = confident(BALANCED, margin=1.0).requires_grad_(True)
    loss, _ = loss_on_target_logits(make("entropy"), logits)
    (grad,) = torch.autograd.grad(loss, logits)
    stepped = (logits - 10.0 * grad).detach()
    assert (stepped.softmax(1).max(1).values > logits.detach().softmax(1).max(1).values).all()


def test_im_diversity_penalises_predictions_collapsed_onto_one_class():
    adapter = make("im")
    _, balanced = loss_on_target_logits(adapter, confident(BALANCED))
    _, collapsed = loss_on_target_logits(adapter, confident(COLLAPSED))
    # Both are confident (entropy ~ 0); only diversity tells them apart: -log K against 0.
    assert float(balanced["entropy"]) == pytest.approx(0.0, abs=1e-6)
    assert float(collapsed["entropy"]) == pytest.approx(0.0, abs=1e-6)
    assert float(balanced["diversity"]) == pytest.approx(-math.log(K))
    assert float(collapsed["diversity"]) == pytest.approx(0.0, abs=1e-6)
    assert float(balanced["im"]) < float(collapsed["im"])
    # Uniform predictions are diverse but uncertain: entropy log K cancels diversity -log K.
    assert raw("im", UNIFORM) == pytest.approx(0.0, abs=1e-6)
    assert raw("im", confident(BALANCED)) < raw("im", UNIFORM)


def test_im_combines_its_terms_with_the_diversity_weight_and_weight():
    logits = confident(BALANCED, margin=1.0) + torch.linspace(0, 2, B)[:, None] * confident(COLLAPSED, 1.0)
    loss, s = loss_on_target_logits(make("im", weight=0.3, diversity_weight=0.5), logits)
    assert float(loss) == pytest.approx(0.3 * (float(s["entropy"]) + 0.5 * float(s["diversity"])))
    assert float(s["im"]) == pytest.approx(float(s["entropy"]) + 0.5 * float(s["diversity"]))
    assert raw("im", logits, diversity_weight=0.0) == pytest.approx(raw("entropy", logits))


def test_mcc_is_zero_for_clean_predictions_and_high_for_confused_ones():
    clean = raw("mcc", confident(BALANCED))
    # Each sample split evenly between classes c and c+1: each class's normalised row keeps 1/2 on
    # its diagonal and 1/4 on each neighbour, so the off-diagonal mass per class is 1/2.
    pairs = confident(BALANCED) + confident((BALANCED + 1) % K)
    confused = raw("mcc", pairs)
    assert clean == pytest.approx(0.0, abs=1e-4)
    assert confused == pytest.approx(0.5, abs=1e-3)
    # All-uniform predictions: every row of the normalised matrix is 1/K, off-diagonal mass (K-1)/K.
    assert raw("mcc", UNIFORM) == pytest.approx((K - 1) / K)


def test_mcc_temperature_softens_predictions_into_more_confusion():
    assert make("mcc").mcc.T == 2.5  # the paper's and Transfer-Learning-Library's value
    logits = confident(BALANCED, margin=4.0)
    assert raw("mcc", logits, temperature=1.0) < raw("mcc", logits, temperature=2.5) < raw("mcc", logits, temperature=5.0)


def test_bnm_is_minus_the_batch_nuclear_norm_over_batch_size():
    # Confident and balanced: K orthogonal columns of norm sqrt(B/K), nuclear norm sqrt(B K).
    balanced = raw("bnm", confident(BALANCED))
    collapsed = raw("bnm", confident(COLLAPSED))  # rank 1, nuclear norm sqrt(B)
    uniform = raw("bnm", UNIFORM)  # rank 1, nuclear norm sqrt(B / K)
    assert balanced == pytest.approx(-math.sqrt(K / B), rel=1e-5)
    assert collapsed == pytest.approx(-1 / math.sqrt(B), rel=1e-5)
    assert uniform == pytest.approx(-1 / math.sqrt(B * K), rel=1e-5)
    assert balanced < collapsed < uniform < 0


def afn_gradients(adapter, f_s: torch.Tensor, f_t: torch.Tensor):
    f_s, f_t = f_s.clone().requires_grad_(True), f_t.clone().requires_grad_(True)
    loss, scalars = adapter.loss(f_s, f_t, logits_s=torch.zeros(len(f_s), K), logits_t=torch.zeros(len(f_t), K),
                                 y_s=torch.zeros(len(f_s), dtype=torch.long), progress=0.5)
    return loss, scalars, torch.autograd.grad(loss, (f_s, f_t))


def test_afn_pulls_every_feature_norm_up_by_delta_in_both_domains():
    weight, delta = 0.5, 2.0
    adapter = make("afn", weight=weight, delta=delta)
    g = torch.Generator().manual_seed(0)
    f_s, f_t = torch.randn(8, DIM, generator=g), 3 * torch.randn(12, DIM, generator=g)
    loss, scalars, (g_s, g_t) = afn_gradients(adapter, f_s, f_t)
    # Each domain's term is mean((|f| - (|f| + delta))^2) = delta^2, whatever the features.
    assert float(loss.detach()) == pytest.approx(weight * 2 * delta**2)
    assert float(scalars["target_feature_norm"]) == pytest.approx(float(f_t.norm(dim=1).mean()))
    for f, grad in ((f_s, g_s), (f_t, g_t)):
        unit = f / f.norm(dim=1, keepdim=True)
        # Along each feature's own direction, outwards, averaged per domain (so batch size does not weigh).
        assert torch.allclose(grad, -2 * weight * delta / len(f) * unit, atol=1e-6)
        # Minimising with the radius held fixed lands each feature's norm delta further out.
        target_norm = f.norm(dim=1) + delta
        step = len(f) / (2 * weight)  # the step size that solves each sample's quadratic exactly
        assert torch.allclose((f - step * grad).norm(dim=1), target_norm, atol=1e-4)


def test_head_dropout_for_afn_is_off_by_default_and_only_active_in_training():
    """SAFN's dropout before the classifier is the model's ``model.head_dropout`` (an adapter is a loss)."""
    from da.models.head import linear_head

    f = torch.ones(64, DIM)
    plain, head = linear_head(DIM, 3), linear_head(DIM, 3, dropout=0.5)
    assert type(plain) is nn.Linear
    head.load_state_dict(plain.state_dict())  # the same weights as a plain linear head
    assert not torch.equal(head(f), plain(f))
    assert torch.equal(head.eval()(f), plain(f))


@pytest.mark.parametrize("name", PLUGINS)
def test_plugin_adapter_declares_the_domains_its_loss_reaches(name):
    cls = ADAPTERS.get(name)
    expected = ("source", "target") if name == "afn" else ("target",)
    assert cls.aligns_by_gradient and tuple(cls.gradient_domains) == expected
    assert cls.__doc__ and cls.__module__ == f"da_plugins.{name}"

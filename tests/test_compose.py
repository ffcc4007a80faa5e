"""Adapter lists: the composite's loss and scalars, config validation and round trip, a run through the CLI."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from conftest import one_line_error, tb_tags, tiny_config
from da import Adapter, register_adapter
from da.adapters.compose import Composite, part_keys
from da.checkpoint import load_checkpoint
from da.composition import build_adapter, build_config, load_config
from da.config import AdapterConfig, Config, dump_yaml, to_dict
from da.data.synthetic import NUM_CLASSES
from da.errors import DAError
from da.registry import ADAPTERS

DIM, CLASSES, N = 64, 4, 32


class Scaled(Adapter):
    """Test-only: squared mean difference times its own ``weight`` (default 0.25)."""

    def __init__(self, weight: float = 0.25) -> None:
        super().__init__()
        self.weight = weight

    def loss(self, f_s, f_t, **_):
        value = (f_s.mean() - f_t.mean()) ** 2
        return self.weight * value, {"raw": value.detach()}


class Unweighted(Adapter):
    """Test-only: squared mean difference, with no weight argument of its own."""

    def loss(self, f_s, f_t, **_):
        return (f_s.mean() - f_t.mean()) ** 2, {}


@pytest.fixture
def test_adapters(monkeypatch):
    """Registers Scaled and Unweighted for one test only, leaving the global registry as it was."""
    monkeypatch.setattr(ADAPTERS, "_entries", dict(ADAPTERS._entries))
    register_adapter("test_scaled")(Scaled)
    register_adapter("test_unweighted")(Unweighted)


def inputs(seed: int = 0, requires_grad: bool = False):
    g = torch.Generator().manual_seed(seed)
    f_s, f_t = torch.randn(N, DIM, generator=g), torch.randn(N, DIM, generator=g) * 2 + 1
    f_s.requires_grad_(requires_grad)
    f_t.requires_grad_(requires_grad)
    head = torch.nn.Linear(DIM, CLASSES)
    return dict(f_s=f_s, f_t=f_t, logits_s=head(f_s), logits_t=head(f_t), y_s=torch.arange(N) % CLASSES, progress=0.6)


def composite_config(parts: list[dict]) -> Config:
    return build_config({**tiny_config(), "adapter": parts})


def test_part_keys_number_repeats():
    assert part_keys(["cdan", "mmd", "cdan", "cdan"]) == ["cdan", "mmd", "cdan-2", "cdan-3"]


def test_composite_loss_is_the_weighted_sum_of_its_parts_computed_alone(test_adapters):
    torch.manual_seed(0)
    config = composite_config([{"name": "cdan", "hidden": 16}, {"name": "mmd", "weight": 0.5},
                               {"name": "test_unweighted", "weight": 3}, {"name": "cdan", "entropy": False}])
    assert config.adapter.name == "cdan+mmd+test_unweighted+cdan"
    composite = build_adapter(config, DIM, CLASSES)
    assert isinstance(composite, Composite) and list(composite.parts) == ["cdan", "mmd", "test_unweighted", "cdan-2"]
    # The same parts built alone, with the composite's parameters and buffers.
    alone = {}
    for key, spec in zip(composite.parts, config.adapter.parts):
        alone[key] = build_adapter(Config(adapter=AdapterConfig(spec.name, spec.kwargs)), DIM, CLASSES)
        alone[key].load_state_dict(composite.parts[key].state_dict())
    batch = inputs()
    separate = {key: adapter.loss(**batch) for key, adapter in alone.items()}
    total, scalars = composite.loss(**batch)
    # mmd's weight is its own argument (applied once, inside its loss); test_unweighted has none: x3.
    expected = separate["cdan"][0] + separate["mmd"][0] + 3 * separate["test_unweighted"][0] + separate["cdan-2"][0]
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert alone["mmd"].weight == 0.5
    for key, (loss, part_scalars) in separate.items():
        assert scalars[f"{key}/loss"].item() == pytest.approx(loss.item(), rel=1e-5)
        for name, value in part_scalars.items():
            assert float(scalars[f"{key}/{name}"]) == pytest.approx(float(value), rel=1e-5), (key, name)
    assert {"cdan/domain_loss", "cdan/reversal_weight", "cdan/discriminator_acc", "cdan-2/domain_loss"} <= set(scalars)


def test_composite_sends_a_gradient_to_both_domains_and_reports_its_parts_kinds():
    torch.manual_seed(0)
    composite = build_adapter(composite_config([{"name": "cdan", "hidden": 16}, {"name": "source_only"}]), DIM, CLASSES)
    assert composite.aligns_by_gradient
    batch = inputs(requires_grad=True)
    composite.loss(**batch)[0].backward()
    assert batch["f_s"].grad.abs().sum() > 0 and batch["f_t"].grad.abs().sum() > 0
    assert not build_adapter(composite_config([{"name": "source_only"}]), DIM, CLASSES).aligns_by_gradient


def test_own_weight_is_applied_once_and_keeps_its_default(test_adapters):
    batch = inputs()
    raw = ((batch["f_s"].mean() - batch["f_t"].mean()) ** 2).item()
    for item, weight in (({}, 0.25), ({"weight": 0.5}, 0.5)):
        config = composite_config([{"name": "test_scaled", **item}])
        assert config.adapter.kwargs == {"test_scaled/weight": weight}
        loss, _ = build_adapter(config, DIM, CLASSES).loss(**batch)
        assert loss.item() == pytest.approx(weight * raw)


@pytest.mark.parametrize("name", ["subspace", "adda", "mcd"])
def test_a_part_trained_by_a_stage_of_its_own_is_refused(name):
    with pytest.raises(DAError, match=rf"adapter\[1\]: adapter '{name}' is trained by stage '{name}', not a loss"):
        composite_config([{"name": "dann"}, {"name": name}])


BAD = [
    ("empty", [], "config key adapter is an empty list"),
    ("misspelt weight", [{"name": "cdan"}, {"name": "mmd", "weigth": 0.1}], "adapter[1].weigth: did you mean weight?"),
    ("misspelt kwarg", [{"name": "cdan", "hiden": 3}], "adapter[0].hiden: did you mean hidden?"),
    ("no name", [{"name": "dann"}, {"weight": 2}], "adapter[1].name is missing"),
    ("unknown name", [{"name": "cdam"}], "adapter[0].name: unknown adapter 'cdam' (did you mean 'cdan'?)"),
    ("not a section", [{"name": "dann"}, "mmd"], "adapter[1] must be a section"),
    ("wrong type", [{"name": "cdan", "randomized": "yes"}], "adapter[0].randomized must be true or false"),
    ("weight not a number", [{"name": "source_only", "weight": "x"}], "adapter[0].weight must be a number"),
    ("negative weight", [{"name": "dann", "weight": -1}], "adapter[0].weight must not be negative"),
    ("loop-provided", [{"name": "cdan", "num_classes": 3}], "adapter[0].num_classes is set by the loop"),
    ("stage-trained", [{"name": "subspace"}], "adapter[0]: adapter 'subspace' is trained by stage 'subspace', not a loss"),
]


@pytest.mark.parametrize("parts,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_adapter_list_gets_one_line_naming_the_position(parts, message, write_config, tmp_path, cli):
    path = write_config({**tiny_config(), "adapter": parts})
    code, _, err = cli("train", "-c", path, "--dry-run")
    assert code == 2
    line = one_line_error(err)
    assert message in line, line


def test_set_into_a_list_is_refused_in_one_line(write_config, cli):
    """``--set adapter.0.weight=...`` is not supported: --set walks mappings only."""
    path = write_config({**tiny_config(), "adapter": [{"name": "dann"}]})
    code, _, err = cli("train", "-c", path, "--dry-run", "--set", "adapter.0.weight=2")
    assert code == 2 and "adapter is a value, not a section" in one_line_error(err)


def test_list_config_round_trips_through_config_yaml(write_config, test_adapters):
    parts = [{"name": "cdan", "hidden": 32, "randomized": True}, {"name": "mmd", "weight": 0.1, "layer": "both"},
             {"name": "test_scaled"}, {"name": "test_unweighted", "weight": 2}, {"name": "cdan"}]
    config = load_config(write_config({**tiny_config(), "adapter": parts}))
    dumped = yaml.safe_load(dump_yaml(config))
    # Written back as a list, without weights the items did not have.
    assert dumped["adapter"] == [{"name": "cdan", "hidden": 32, "randomized": True},
                                 {"name": "mmd", "weight": 0.1, "layer": "both"}, {"name": "test_scaled"},
                                 {"name": "test_unweighted", "weight": 2.0}, {"name": "cdan"}]
    again = load_config(write_config(dump_yaml(config), "config.yaml"))
    assert again == config and to_dict(again) == to_dict(config)
    assert config.adapter.kwargs == {"cdan/hidden": 32, "cdan/randomized": True, "cdan/weight": 1.0,
                                     "mmd/weight": 0.1, "mmd/layer": "both", "test_scaled/weight": 0.25,
                                     "test_unweighted/weight": 2.0, "cdan-2/weight": 1.0}


def test_single_adapter_config_is_unchanged(write_config):
    config = load_config(write_config(tiny_config()))
    assert config.adapter == AdapterConfig("dann", {"hidden": 32})
    assert to_dict(config)["adapter"] == {"name": "dann", "hidden": 32}


def test_composed_run_through_the_cli_logs_each_part_and_resumes_from_its_config(write_config, tmp_path, cli):
    cfg = tiny_config(train={"steps": 4, "eval_every": 4, "log_every": 2, "checkpoint_every": 4})
    cfg["adapter"] = [{"name": "cdan", "hidden": 32}, {"name": "mmd", "weight": 0.5}]
    out = tmp_path / "run"
    code, _, err = cli("train", "-c", write_config(cfg), "--out", out, "-q")
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["adapter"] == "cdan+mmd"
    assert summary["hparams"] == {"cdan/hidden": 32, "cdan/weight": 1.0, "mmd/weight": 0.5}
    tags, _ = tb_tags(out)
    expected = {"loss/adapter", "adapter/cdan/loss", "adapter/cdan/domain_loss", "adapter/cdan/reversal_weight",
                "adapter/cdan/discriminator_acc", "adapter/mmd/loss"}
    assert expected <= tags, expected - tags
    # What `da train --resume` does: reload config.yaml, rebuild, load the checkpoint's weights.
    reloaded = load_config(out / "config.yaml")
    assert to_dict(reloaded) == to_dict(load_config(write_config(cfg)))
    state = load_checkpoint(out / "checkpoint.pt")
    build_adapter(reloaded, 500, NUM_CLASSES).load_state_dict(state["adapter"])

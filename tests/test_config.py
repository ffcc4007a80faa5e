"""Config loading: inheritance, --set overrides, and one clear error line for each bad input."""
from __future__ import annotations

import pytest

from conftest import ROOT, one_line_error, tiny_config
from da.composition import load_config
from da.config import to_dict
from da.errors import DAError


@pytest.mark.parametrize("name", ["source_only", "dann", "mmd", "jan", "coral", "subspace", "cdan"])
def test_shipped_configs_validate_and_share_the_base(name):
    config = load_config(ROOT / "configs" / "mnist_usps" / f"{name}.yaml")
    assert config.adapter.name == name
    assert config.name == name
    assert (config.data.source, config.data.target, config.model.backbone) == ("mnist", "usps", "lenet")


def test_target_only_config_trains_and_tests_on_usps():
    config = load_config(ROOT / "configs" / "mnist_usps" / "target_only.yaml")
    assert (config.adapter.name, config.data.source, config.data.target) == ("source_only", "usps", "usps")


def test_set_overrides_any_value_with_yaml_types(write_config):
    path = write_config(tiny_config())
    config = load_config(path, ["train.lr=1e-3", "adapter.hidden=64", "seed=7", "train.nesterov=false"])
    assert config.train.lr == 0.001 and config.seed == 7 and config.train.nesterov is False
    assert config.adapter.kwargs == {"hidden": 64}


def test_inherit_merges_nested_sections(tmp_path):
    (tmp_path / "base.yaml").write_text("seed: 3\ntrain: {lr: 0.5, steps: 9}\n")
    (tmp_path / "child.yaml").write_text("inherit: base.yaml\ntrain: {steps: 2}\nadapter: {name: coral}\n")
    config = load_config(tmp_path / "child.yaml")
    assert (config.seed, config.train.lr, config.train.steps, config.adapter.name) == (3, 0.5, 2, "coral")


def test_resolved_config_round_trips(write_config, tmp_path):
    import yaml

    config = load_config(write_config(tiny_config()), ["adapter.weight=0.5"])
    again = write_config(yaml.safe_dump(to_dict(config)), "again.yaml")
    assert to_dict(load_config(again)) == to_dict(config)


BAD = [
    ("missing file", None, [], "does not exist"),
    ("malformed yaml", "train: {steps: 3\n  lr: [", [], "not valid YAML at line"),
    ("not a mapping", "- a\n- b\n", [], "must hold a mapping"),
    ("unknown key, nearest named", {"trian": {"steps": 1}}, [], "unknown config key 'trian'; did you mean train?"),
    ("unknown nested key", {"train": {"step": 1}}, [], "did you mean train.steps?"),
    ("wrong type", {"train": {"lr": "fast"}}, [], "train.lr must be a number"),
    ("wrong type bool", {"data": {"download": "yes"}}, [], "data.download must be true or false"),
    ("bad choice", {"train": {"extractor": "melt"}}, [], "must be one of finetune, freeze"),
    ("negative", {"train": {"steps": -1}}, [], "train.steps must not be negative"),
    ("unknown adapter", {"adapter": {"name": "danm"}}, [], "unknown adapter 'danm' (did you mean 'dann'?); valid names: "),
    ("unknown dataset", {"data": {"target": "svhn"}}, [], "unknown dataset 'svhn'"),
    ("unknown backbone", {"model": {"backbone": "vgg"}}, [], "valid names: lenet, lenet_bn, lenet_gn, lenet_shot, resnet18, resnet50"),
    ("bad adapter kwarg", {"adapter": {"name": "dann", "hiden": 3}}, [], "adapter 'dann' does not take 'hiden'; did you mean adapter.hidden?"),
    ("loop-provided kwarg", {"adapter": {"name": "dann", "feature_dim": 3}}, [], "set by the loop"),
    ("augment scale", {"data": {"augment": {"scale": [1.3, 0.9]}}}, [], "data.augment.scale must be [low, high]"),
    ("augment domain", {"data": {"augment": {"domains": ["test"]}}}, [], "data.augment.domains must list source"),
    ("augment key", {"data": {"augment": {"rotation": 10}}}, [], "did you mean data.augment.rotate?"),
    ("bad --set", {}, ["train.steps"], "must look like key=value"),
    ("bad --set key", {}, ["train.stepz=3"], "did you mean train.steps?"),
]


@pytest.mark.parametrize("what,content,sets,message", BAD, ids=[b[0] for b in BAD])
def test_bad_config_gets_one_clear_line(what, content, sets, message, write_config, tmp_path, cli):
    if content is None:
        path = tmp_path / "nope.yaml"
    elif isinstance(content, str):
        path = write_config(content)
    else:
        cfg = tiny_config()
        for key, value in content.items():
            cfg[key] = {**cfg.get(key, {}), **value} if key != "adapter" else value
        path = write_config(cfg)
    with pytest.raises(DAError, match=None):
        load_config(path, sets)
    args = ["train", "-c", path, "--dry-run"] + [x for s in sets for x in ("--set", s)]
    code, out, err = cli(*args)
    assert code == 2
    line = one_line_error(err)
    assert message in line, line
    assert not list(tmp_path.glob("runs*")), "a failed validation must not create run folders"


def test_cli_usage_errors_are_one_line(cli):
    code, _, err = cli("train")
    assert code == 2
    assert "needs -c CONFIG" in one_line_error(err)
    code, _, err = cli("trian")
    assert code == 2 and "invalid choice" in one_line_error(err)


def test_installed_da_command_reports_bad_input_without_traceback(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  steps: [1,\n")
    proc = subprocess.run([sys.executable, "-m", "da.cli", "train", "-c", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert one_line_error(proc.stderr).startswith("da: error: config file")


def test_optional_adapter_arguments_check_the_type_inside_the_union():
    from da.composition import build_config

    with pytest.raises(DAError, match="adapter.randomized must be true or false, got 'yes'"):
        build_config({"adapter": {"name": "cdan", "randomized": "yes"}})
    assert build_config({"adapter": {"name": "cdan", "randomized": None}}).adapter.kwargs == {"randomized": None}


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: p.relative_to(ROOT / "configs").as_posix())
def test_every_shipped_config_and_benchmark_validates(path):
    if path.parent.name == "benchmarks" or path.name == "benchmark.yaml":  # configs/shot_digits/benchmark.yaml
        from da.bench.plan import load_bench_config, plan_runs

        assert plan_runs(load_bench_config(path))
    else:
        load_config(path)


def test_setting_another_adapter_starts_it_from_its_defaults(write_config):
    path = write_config(tiny_config(adapter={"name": "dann", "hidden": 32}))
    config = load_config(path, ["adapter.name=mmd", "adapter.weight=2"])
    assert (config.adapter.name, config.adapter.kwargs) == ("mmd", {"weight": 2.0})
    assert load_config(path, ["adapter.name=dann"]).adapter.kwargs == {"hidden": 32}  # same adapter: kept

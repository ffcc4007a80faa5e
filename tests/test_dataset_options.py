"""Data sets with options: ``data.target: {name: NAME, option: value}``, declared by a loader's
keyword-only parameters, checked with one line naming the key, and naming the domain they give."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
import torch

from conftest import one_line_error, tiny_config
from da.composition import build_config
from da.data import DomainData, Split, register_dataset
from da.data.dataset_entry import dataset_spec, spec_label
from da.domains import load_domains
from da.errors import DAError
from da.registry import DATASETS


def patterned(root: Path, download: bool, role: str, *, shade: Literal["dark", "light"], classes: int = 4,
              scale: float = 1.0) -> DomainData:
    """Four noisy class patterns, dark or light (a data set with options, for these tests)."""
    g = torch.Generator().manual_seed(0 if shade == "dark" else 1)
    patterns = torch.rand(classes, 1, 28, 28, generator=torch.Generator().manual_seed(5)) * 2 - 1
    offset = -0.3 if shade == "dark" else 0.3

    def split(n: int) -> Split:
        y = torch.arange(n) % classes
        return Split((scale * patterns[y] + offset + 0.3 * torch.randn(n, 1, 28, 28, generator=g)).clamp(-1, 1), y)

    return DomainData("patterned", split(96), split(48), classes)


if "opt_patterned" not in DATASETS:
    register_dataset("opt_patterned")(patterned)


def test_options_are_the_loaders_keyword_only_parameters():
    shade, classes, scale = DATASETS.get("opt_patterned").options
    assert (shade.name, shade.choices, shade.required) == ("shade", ("dark", "light"), True)
    assert (classes.name, classes.hint, classes.default) == ("classes", int, 4)
    assert scale.describe() == "scale: float = 1.0"
    corruption, severity = DATASETS.get("mnist_c").options
    assert len(corruption.choices) == 15 and severity.choices == (1, 2, 3, 4, 5) and severity.default == 5
    assert DATASETS.get("mnist").options == () and DATASETS.get("amazon").options == ()


def test_a_mapping_with_a_name_is_the_registered_entry_with_its_options_filled_in():
    entry, options = dataset_spec({"name": "mnist_c", "corruption": "fog"}, "data.target")
    assert entry.name == "mnist_c" and options == {"corruption": "fog", "severity": 5}
    assert dataset_spec("mnist") == (DATASETS.get("mnist"), {})
    assert spec_label({"name": "mnist_c", "corruption": "fog", "severity": 3}) == "mnist_c/fog/3"
    assert spec_label({"name": "opt_patterned", "shade": "dark", "scale": 2}) == "opt_patterned/dark/4/2.0"
    assert spec_label(["mnist", {"name": "usps_c", "corruption": "snow"}]) == "mnist+usps_c/snow/5"
    assert build_config(tiny_config(data={"target": {"name": "mnist_c", "corruption": "fog"}})).data.target == {
        "name": "mnist_c", "corruption": "fog"}  # the config keeps what was given; summary.json records it so


BAD = [
    ("unknown option", {"name": "mnist_c", "corruption": "fog", "sevrity": 2},
     "config key data.target.sevrity is not an option of dataset mnist_c; did you mean data.target.severity? it takes: "),
    ("unknown corruption", {"name": "mnist_c", "corruption": "gausian_noise"},
     "config key data.target.corruption must be one of gaussian_noise, shot_noise,"),
    ("severity out of range", {"name": "usps_c", "corruption": "fog", "severity": 6},
     "config key data.target.severity must be one of 1, 2, 3, 4, 5; got 6 (int)"),
    ("severity as a string", {"name": "mnist_c", "corruption": "fog", "severity": "5"},
     "config key data.target.severity must be one of 1, 2, 3, 4, 5; got '5' (str)"),
    ("wrong type", {"name": "opt_patterned", "shade": "dark", "classes": 2.5},
     "config key data.target.classes must be an integer, got 2.5 (float)"),
    ("option to a data set without options", {"name": "usps", "corruption": "fog"},
     "config key data.target.corruption: dataset usps takes no options; give its name alone (data.target: usps)"),
    ("missing required option", {"name": "mnist_c", "severity": 3},
     "config key data.target.corruption is missing: dataset mnist_c needs it"),
    ("bare name of a data set with a required option", "mnist_c", "config key data.target.corruption is missing"),
    ("unknown name", {"name": "mnist_cc", "corruption": "fog"},
     "config key data.target.name: unknown dataset 'mnist_cc' (did you mean 'mnist_c'?)"),
    ("name not a string", {"name": 3}, "config key data.target.name must be a dataset name (a string), got 3 (int)"),
    ("name and folder", {"name": "mnist", "folder": "x"}, "config key data.target has both name (a registered data set) and folder"),
]


@pytest.mark.parametrize("what,target,message", BAD, ids=[b[0] for b in BAD])
def test_bad_options_get_one_line_naming_the_key(what, target, message):
    with pytest.raises(DAError) as info:
        build_config(tiny_config(data={"target": target}))
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_an_unknown_corruption_suggests_the_closest_name():
    with pytest.raises(DAError, match=r"got 'gausian_noise' \(str\) \(did you mean gaussian_noise\?\)"):
        build_config(tiny_config(data={"target": {"name": "mnist_c", "corruption": "gausian_noise"}}))


def test_a_bad_option_stops_the_cli_with_exit_2_before_a_run_folder(cli, write_config, tmp_path):
    target = {"name": "mnist_c", "corruption": "fogg", "severity": 5}
    path = write_config(tiny_config(data={"target": target}, out_root=str(tmp_path / "runs")))
    for extra in ([], ["--dry-run"]):
        code, _, err = cli("train", "-c", path, "-q", *extra)
        assert code == 2 and one_line_error(err).startswith("da: error: config key data.target.corruption must be one of")
        assert "(did you mean fog?)" in err
    code, _, err = cli("train", "-c", path, "--set", "data.target.corruption=fog", "--set", "data.target.severity=0")
    assert code == 2 and "data.target.severity must be one of 1, 2, 3, 4, 5; got 0" in one_line_error(err)
    assert not (tmp_path / "runs").exists()


def test_a_dry_run_and_da_data_show_the_options(cli, write_config):
    path = write_config(tiny_config(data={"target": {"name": "mnist_c", "corruption": "fog", "severity": 3}}))
    code, out, _ = cli("train", "-c", path, "--dry-run")
    assert code == 0 and "mnist_c (corruption=fog, severity=3) is generated and cached on the first run" in out
    code, out, _ = cli("data", path)
    assert code == 0 and "target: mnist_c/fog/3 (mnist_c with corruption=fog, severity=3: an in-memory data set" in out
    path = write_config(tiny_config(data={"source": {"name": "opt_patterned", "shade": "dark"}, "target": "opt_patterned"}),
                        "loaded.yaml")
    code, out, err = cli("train", "-c", path, "--dry-run")
    assert code == 2 and "config key data.target.shade is missing" in one_line_error(err)


def test_options_name_the_domain_and_keep_pooled_sources_apart():
    config = build_config(tiny_config(data={
        "source": [{"name": "opt_patterned", "shade": "dark"}, {"name": "opt_patterned", "shade": "light"}],
        "target": {"name": "opt_patterned", "shade": "light", "scale": 0.5}, "source_val_size": 16}))
    domains = load_domains(config.data, torch.device("cpu"))
    assert domains.source_train.names == ("opt_patterned/dark/4/1.0", "opt_patterned/light/4/1.0")
    assert len(domains.target_test) == 48
    entry = DATASETS.get("opt_patterned")
    assert entry.load(Path("."), "target", kwargs={"shade": "dark", "classes": 3}).name == "opt_patterned/dark/3/1.0"
    with pytest.raises(DAError, match="data.source must be a list of distinct names; it lists opt_patterned/dark/4/1.0"):
        build_config(tiny_config(data={"source": [{"name": "opt_patterned", "shade": "dark"},
                                                  {"name": "opt_patterned", "shade": "dark", "classes": 4}]}))


@pytest.mark.slow
def test_a_run_records_the_target_as_the_config_gives_it(cli, write_config, tmp_path):
    target = {"name": "opt_patterned", "shade": "light"}
    cfg = tiny_config(data={"source": {"name": "opt_patterned", "shade": "dark"}, "target": target, "source_val_size": 16},
                      out_root=str(tmp_path / "runs"), pretrain={"steps": 2},
                      train={"steps": 2, "eval_every": 2, "checkpoint_every": 2})
    code, out, err = cli("train", "-c", write_config(cfg), "-q")
    assert code == 0, err
    summary = json.loads(next((tmp_path / "runs").glob("*/summary.json")).read_text())
    assert summary["target"] == target and summary["source"] == {"name": "opt_patterned", "shade": "dark"}

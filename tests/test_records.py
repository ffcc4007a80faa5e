"""Data sets and backbones as typed records: every registered name is a DatasetEntry / BackboneEntry
whose fields the code reads, one registration path for each kind, the ``da.datasets`` and
``da.backbones`` entry-point groups, and the one-line errors around them."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from conftest import one_line_error, tiny_config
from da.data import DatasetEntry, DomainData, Split, dataset_entry, register_dataset, register_image_folder
from da.errors import DAError
from da.models import BackboneEntry, register_backbone
from da.models.pretrained import DIGITS, IMAGENET
from da.registry import BACKBONES, DATASETS

GENERATED = {"syndigits", "mnist_m", "optdigits", "mnist_c", "usps_c"}
IMAGE_FOLDERS = {"amazon": 31, "dslr": 31, "webcam": 31, "art": 65, "clipart": 65, "product": 65, "real_world": 65}


@pytest.fixture
def fresh_registries(monkeypatch):
    """DATASETS and BACKBONES as they are, with entry points read anew; restored afterwards."""
    for registry in (DATASETS, BACKBONES):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        monkeypatch.setattr(registry, "_plugins_loaded", False)
        monkeypatch.setattr(registry, "plugin_errors", [])


# ---------------------------------------------------------------- the built-in records


def built_in(registry) -> dict:
    """The entries ``da`` itself registers (other tests register tiny ones of their own)."""
    return {name: entry for name, entry in registry.items() if entry.origin.startswith(("da.", "the image folder"))}


def test_every_data_set_is_a_record_with_a_loader_or_an_image_folder():
    for name, entry in DATASETS.items():
        assert isinstance(entry, DatasetEntry) and entry.name == name, name
        assert (entry.loader is None) != (entry.image_spec is None), name
    ours = built_in(DATASETS)
    assert all(entry.description for entry in ours.values())
    assert {n for n, e in ours.items() if e.generated} == GENERATED
    assert {n: e.num_classes for n, e in ours.items() if e.image_spec is not None} == IMAGE_FOLDERS
    assert DATASETS.get("amazon").image_spec == {"folder": "office31/amazon"}
    assert DATASETS.get("mnist").num_classes == 10 and DATASETS.get("shapes").num_classes == 2


def test_every_backbone_is_a_record_whose_fields_match_the_network_it_builds():
    assert set(built_in(BACKBONES)) == {"lenet", "lenet_bn", "lenet_gn", "lenet_shot", "resnet18", "resnet50"}
    for name, entry in built_in(BACKBONES).items():
        assert isinstance(entry, BackboneEntry) and entry.name == name and entry.description, name
        net = entry.build(pretrained=False, in_channels=1)
        has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
        assert net.out_features == entry.out_features and has_batch_norm == entry.batch_norm, name
        assert tuple(n for n, _ in net.blocks()) == entry.block_names, name
    assert BACKBONES.get("lenet").pretrained_cfg == DIGITS and BACKBONES.get("resnet50").pretrained_cfg == IMAGENET
    assert BACKBONES.get("lenet").blocks(256) == ("conv1", "conv2", "fc", "bottleneck")
    assert BACKBONES.get("lenet").blocks(None) == ("conv1", "conv2", "fc")


def test_an_inline_folder_is_an_unregistered_record_and_a_name_its_registered_one():
    inline = dataset_entry({"folder": "somewhere/my_photos", "test_fraction": 0.2})
    assert inline.name == "my_photos" and inline.image_spec["test_fraction"] == 0.2 and "my_photos" not in DATASETS
    assert dataset_entry("usps") is DATASETS.get("usps")
    with pytest.raises(DAError, match="unknown dataset 'usp' \\(did you mean 'usps'\\?\\)"):
        dataset_entry("usp")


# ---------------------------------------------------------------- registering


def tiny_loader(classes: int = 3):
    def load(root: Path, download: bool, role: str) -> DomainData:
        """A tiny in-memory pair."""
        g = torch.Generator().manual_seed(0 if role == "source" else 1)
        split = lambda n: Split(torch.rand(n, 1, 28, 28, generator=g) * 2 - 1, torch.arange(n) % classes)
        return DomainData(f"tiny_{role}", split(96), split(48), num_classes=classes)

    return load


def test_the_decorator_registers_a_record_and_returns_the_loader(fresh_registries):
    loader = tiny_loader()
    assert register_dataset("tiny_records", num_classes=3)(loader) is loader
    entry = DATASETS.get("tiny_records")
    assert entry.loader is loader and entry.description == "A tiny in-memory pair." and not entry.generated
    data = entry.load(Path("."), "target")
    assert data.name == "tiny_target" and data.num_classes == 3
    register_dataset("tiny_records", num_classes=3)(loader)  # the same registration again (a module imported twice)


def test_a_name_taken_is_one_line_naming_both_registrations(fresh_registries):
    with pytest.raises(DAError) as info:
        register_dataset("mnist")(tiny_loader())
    assert str(info.value).startswith("dataset name 'mnist' is already registered by da.data.digits.mnist; ")
    assert "tiny_loader.<locals>.load must pick another name" in str(info.value)
    with pytest.raises(DAError, match="already registered by the image folder amazon"):
        register_image_folder("amazon", "elsewhere/amazon")
    with pytest.raises(DAError, match="backbone name 'lenet' is already registered by da.models.backbones.lenet"):
        register_backbone("lenet")(lambda pretrained=False, in_channels=1: nn.Identity())
    assert DATASETS.get("mnist").loader.__module__ == "da.data.digits"


def test_a_bare_function_is_refused_with_the_decorator_to_use(fresh_registries):
    with pytest.raises(DAError, match="dataset 'bare' .* is not a record; register it with @register_dataset\\('bare', ...\\)"):
        DATASETS.register("bare")(tiny_loader())
    with pytest.raises(DAError, match="is not a record; register it with @register_backbone\\('bare', ...\\)"):
        BACKBONES.register("bare")(nn.Identity)
    assert "bare" not in DATASETS and "bare" not in BACKBONES


def test_a_declared_number_of_classes_is_checked_against_the_data(fresh_registries):
    register_dataset("tiny_wrong", num_classes=5)(tiny_loader(classes=3))
    with pytest.raises(DAError, match="dataset tiny_wrong is registered with 5 classes but its data under .* has 3"):
        DATASETS.get("tiny_wrong").load(Path("."), "source")


def test_a_record_needs_exactly_one_way_to_load():
    with pytest.raises(DAError, match="exactly one of a loader"):
        DatasetEntry("both", "", loader=tiny_loader(), image_spec={"folder": "x"})
    with pytest.raises(DAError, match="exactly one of a loader"):
        DatasetEntry("neither", "")


# ---------------------------------------------------------------- entry-point plugins


PLUGIN = """
    import torch
    from torch import nn

    from da.data import DomainData, Split, register_dataset
    from da.models import register_backbone
    from da.models.pretrained import DIGITS


    @register_dataset("{dataset}", num_classes=3)
    def blobs(root, download, role):
        '''Three bright blobs, one place per class; the target's are dimmer.'''
        g = torch.Generator().manual_seed(0 if role == "source" else 1)
        def split(n):
            y = torch.arange(n) % 3
            x = -torch.ones(n, 1, 28, 28)
            for c in range(3):
                x[y == c, :, 4 + 8 * c: 10 + 8 * c, 8:20] = 1.0 if role == "source" else 0.3
            return Split(x + 0.2 * torch.randn(n, 1, 28, 28, generator=g), y)
        return DomainData(f"blobs_{{role}}", split(120), split(60), num_classes=3)


    @register_backbone("{backbone}", pretrained_cfg=DIGITS, batch_norm=False, out_features=32)
    def mlp(pretrained=False, in_channels=1):
        '''A one-layer perceptron on 28 x 28 images.'''
        net = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 28 * 28, 32), nn.ReLU())
        net.out_features = 32
        return net
    """


def install_plugin(where: Path, monkeypatch, package: str, module: str, body: str, groups: tuple[str, ...]) -> None:
    """A package ``importlib.metadata`` sees, as ``pip install`` would leave it, declaring ``module``
    in each entry-point group of ``groups``."""
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{module}.py").write_text(textwrap.dedent(body))
    dist = where / f"{package}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("".join(f"[{group}]\n{module} = {module}\n\n" for group in groups))
    monkeypatch.syspath_prepend(str(where))


def test_data_sets_and_backbones_of_an_installed_package_are_found_and_train(
        tmp_path, monkeypatch, fresh_registries, write_config, cli):
    body = PLUGIN.format(dataset="plugin_blobs", backbone="plugin_mlp")
    install_plugin(tmp_path / "site", monkeypatch, "blobs-plugin", "blobs_plugin_mod", body,
                   ("da.datasets", "da.backbones"))
    assert "blobs_plugin_mod" not in sys.modules
    assert "plugin_blobs" in DATASETS.names() and "plugin_mlp" in BACKBONES.names()
    assert DATASETS.get("plugin_blobs").loader.__module__ == "blobs_plugin_mod"
    assert BACKBONES.get("plugin_mlp").batch_norm is False and not DATASETS.plugin_errors + BACKBONES.plugin_errors
    cfg = tiny_config(data={"source": "plugin_blobs", "target": "plugin_blobs", "source_val_size": 24},
                      model={"backbone": "plugin_mlp"})
    path = write_config(cfg)
    code, out, err = cli("train", "-c", path, "--dry-run")
    assert code == 0 and "(batch and split sizes checked against the data)" in out, err
    code, _, err = cli("train", "-c", path, "--out", tmp_path / "run", "-q")
    assert code == 0, err
    summary = yaml.safe_load((tmp_path / "run" / "summary.json").read_text())
    assert summary["source"] == "plugin_blobs" and summary["backbone"] == "plugin_mlp"


def test_a_plugin_that_takes_a_name_is_reported_by_package_and_the_built_in_stays(
        tmp_path, monkeypatch, fresh_registries, write_config, cli):
    body = PLUGIN.format(dataset="mnist", backbone="plugin_mlp_2")
    install_plugin(tmp_path / "site", monkeypatch, "clash-plugin", "clash_records_mod", body, ("da.datasets",))
    with pytest.warns(UserWarning, match="dataset plugin 'clash_records_mod' from package 'clash-plugin' failed"):
        names = DATASETS.names()
    (message,) = DATASETS.plugin_errors
    assert "\n" not in message and "dataset name 'mnist' is already registered by da.data.digits.mnist" in message
    assert "mnist" in names and DATASETS.get("mnist").loader.__module__ == "da.data.digits"
    code, _, err = cli("train", "-c", write_config(tiny_config(data={"target": "mnist_mm"})), "--dry-run")
    assert code == 2 and one_line_error(err).startswith("da: error: unknown dataset 'mnist_mm' (did you mean 'mnist_m'?)")


# ---------------------------------------------------------------- what the CLI reads of the records


def test_a_dry_run_does_not_build_a_generated_data_set(write_config, cli):
    code, out, err = cli("train", "-c", write_config(tiny_config(data={"source": "syndigits"})), "--dry-run")
    assert code == 0, err
    assert out.strip().endswith("(data not checked: syndigits is generated and cached on the first run)")


def test_da_data_describes_an_in_memory_data_set_by_its_record(write_config, cli):
    code, out, err = cli("data", write_config(tiny_config(data={"source": "shapes"})))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("source: shapes (an in-memory data set under ") and "Circles (0) vs squares (1)" in lines[0]
    assert lines[1].startswith("target: synthetic (an in-memory data set under ")

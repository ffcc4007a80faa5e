"""The generated digit domains (syndigits, mnist_m, optdigits): seeded, in the stated format and
class balance, cached whole (a damaged cache is rebuilt), and paired grey with colour in one format."""
from __future__ import annotations

import json

import pytest
import torch

from da.data import cache, mnist_m, optdigits, syndigits
from da.data.channels import match_channels
from da.data.domain import TensorSplit
from da.domains import Domains
from tests.conftest import tiny_config



@pytest.fixture(autouse=True)
def caches_under_the_data_root(monkeypatch):
    """These tests read the caches under their own data root (tmp_path), where a writable root puts them."""
    monkeypatch.delenv("DA_CACHE_DIR", raising=False)


def fake_mnist(n: int) -> torch.Tensor:
    """Digit-like uint8 images (n, 28, 28): a bright bar on black."""
    x = torch.zeros(n, 28, 28, dtype=torch.uint8)
    x[:, 6:22, 12:16] = 255
    return x


def test_syndigits_is_seeded_colour_28px_and_balanced():
    x, y = syndigits.generate(120, seed=5)
    again, y_again = syndigits.generate(120, seed=5)
    other, _ = syndigits.generate(120, seed=6)
    assert torch.equal(x, again) and torch.equal(y, y_again)
    assert not torch.equal(x, other)
    assert x.shape == (120, 3, 28, 28) and x.dtype == torch.uint8
    assert torch.bincount(y, minlength=10).tolist() == [12] * 10
    # Colour, not grey: the channels differ; and the images use the range, not a constant.
    assert (x[:, 0].float() - x[:, 1].float()).abs().mean() > 5
    assert x.float().std() > 30


def test_syndigits_domain_is_in_unit_range_and_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(syndigits, "TRAIN", 60)
    monkeypatch.setattr(syndigits, "TEST", 40)
    d = syndigits.syndigits(tmp_path, False, "source")
    assert d.train.x.shape == (60, 3, 28, 28) and d.test.x.shape == (40, 3, 28, 28)
    assert d.train.x.min() >= -1 and d.train.x.max() <= 1 and d.num_classes == 10
    assert len(list((tmp_path / cache.FOLDER).glob("syndigits-*.pt"))) == 1
    again = syndigits.syndigits(tmp_path, False, "target")
    assert torch.equal(d.train.x, again.train.x) and torch.equal(d.test.y, again.test.y)


def test_mnist_m_blends_each_digit_with_a_photograph_patch():
    digits = fake_mnist(50)
    x = mnist_m.generate(digits, seed=1)
    assert x.shape == (50, 3, 28, 28) and x.dtype == torch.uint8
    assert torch.equal(x, mnist_m.generate(digits, seed=1))
    assert not torch.equal(x, mnist_m.generate(digits, seed=2))
    patch = mnist_m.patches(50, torch.Generator().manual_seed(1))
    # |patch - digit|: the patch where the digit is black, its inverse where the digit is white.
    assert torch.equal(x[:, :, 0:6], patch[:, :, 0:6])
    assert torch.equal(x[:, :, 6:22, 12:16], 255 - patch[:, :, 6:22, 12:16])
    # Patches come from colour photographs: not grey.
    assert (patch[:, 0].float() - patch[:, 2].float()).abs().mean() > 5


def test_optdigits_split_is_seeded_stratified_and_recorded(tmp_path):
    d = optdigits.optdigits(tmp_path, False, "target")
    assert d.train.x.shape == (1258, 1, 28, 28) and d.test.x.shape == (539, 1, 28, 28)
    assert d.train.x.min() == -1 and d.train.x.max() == 1
    # The digit sits in the central 20 x 20 box, as MNIST's do.
    assert (d.train.x[:, :, :4] == -1).all() and (d.train.x[:, :, :, -4:] == -1).all()
    counts = torch.bincount(d.test.y, minlength=10).float() / torch.bincount(
        torch.cat([d.train.y, d.test.y]), minlength=10).float()
    assert ((counts - 0.3).abs() < 0.02).all()
    saved = torch.load(cache.cache_path(tmp_path, "optdigits-seed0"), weights_only=True)["tensors"]
    from sklearn.datasets import load_digits

    train, test = optdigits.split(torch.from_numpy(load_digits().target).long(), 0)
    assert torch.equal(saved["train_index"], train) and torch.equal(saved["test_index"], test)
    assert not set(train.tolist()) & set(test.tolist()) and len(train) + len(test) == 1797


@pytest.mark.parametrize("damage", ["truncated", "garbage", "flipped_byte", "other_recipe"])
def test_a_damaged_cache_is_rebuilt_not_read(tmp_path, damage):
    recipe = {"generator": "t", "version": 1}
    built = []

    def build():
        built.append(1)
        return {"x": torch.arange(5000, dtype=torch.uint8).view(50, 100), "y": torch.arange(50)}

    first = cache.cached(tmp_path, "t", recipe, build)
    path = cache.cache_path(tmp_path, "t")
    assert cache.cached(tmp_path, "t", recipe, build)["x"].equal(first["x"]) and len(built) == 1
    data = path.read_bytes()
    if damage == "truncated":  # a half-written file under the final name (a copy cut short)
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a cache")
    elif damage == "flipped_byte":  # a bit flip inside the tensors' bytes: the digest catches it
        i = data.index(bytes(range(40, 60)))
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    else:
        recipe = {**recipe, "version": 2}
    again = cache.cached(tmp_path, "t", recipe, build)
    assert len(built) == 2 and again["x"].equal(first["x"])
    assert cache.read(path, recipe) is not None  # the rebuilt cache was written whole
    assert not list(path.parent.glob(".*.tmp"))


def test_a_grey_domain_beside_a_colour_one_is_repeated_to_three_channels():
    grey = TensorSplit(torch.rand(8, 1, 28, 28), torch.zeros(8, dtype=torch.long))
    colour = TensorSplit(torch.rand(8, 3, 28, 28), torch.zeros(8, dtype=torch.long))
    d = match_channels(Domains(grey, grey, grey, colour, colour, num_classes=10, target_probe=colour))
    assert d.source_train.input_shape == (3, 28, 28) and d.target_train.input_shape == (3, 28, 28)
    assert torch.equal(d.source_train.x[:, 2], grey.x[:, 0])
    assert d.source_train.x.untyped_storage().nbytes() == grey.x.untyped_storage().nbytes()  # a view
    same = match_channels(Domains(grey, grey, grey, grey, grey, num_classes=10))
    assert same.source_train.input_shape == (1, 28, 28)


def test_a_colour_source_and_a_grey_target_train_together(cli, write_config, tmp_path, monkeypatch):
    monkeypatch.setattr(syndigits, "TRAIN", 300)
    monkeypatch.setattr(syndigits, "TEST", 100)
    cfg = tiny_config(data={"source": "syndigits", "target": "optdigits", "source_val_size": 50,
                            "root": str(tmp_path / "data")}, out_root=str(tmp_path / "runs"), name="pair")
    code, _, err = cli("train", "-c", write_config(cfg), "--quiet")
    assert code == 0, err
    summary = json.loads((tmp_path / "runs" / "pair" / "summary.json").read_text())
    assert 0 <= summary["target_test_acc"] <= 1


def test_matrix_plot_puts_each_direction_in_its_source_row_and_target_column(tmp_path):
    from da.bench.matrix_plot import matrix_cells, matrix_plot, wants_matrix

    rows = [{"adapter": a, "direction": d, "seed": s, "selection": "last", "step": 1, "target_test_acc": acc + 0.01 * s,
             "source_test_acc": 0.9, "wall_s": 1.0, "run": "r"}
            for a, d, acc in (("source_only", "mnist->mnist_m", 0.5), ("dann", "mnist->mnist_m", 0.7),
                              ("dann", "mnist+usps->optdigits", 0.9)) for s in (0, 1)]
    cells = matrix_cells(rows)
    assert cells["dann"][("mnist", "mnist_m")][0] == pytest.approx(70.5)
    assert cells["dann"][("mnist+usps", "optdigits")][2] == 2 and ("mnist", "optdigits") not in cells["dann"]
    assert wants_matrix(rows) and not wants_matrix(rows[:4])
    matrix_plot(rows, tmp_path / "matrix.png")
    assert (tmp_path / "matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

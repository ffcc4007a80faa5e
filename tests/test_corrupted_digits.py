"""The corrupted digit domains (mnist_c, usps_c): every corruption changes a digit, severity 5 more
than severity 1; generation is seeded per image (the same whatever the chunking, subset or
processes); each (corruption, severity) has its own cache; the ported corruptions give the package's
images. Fake digits stand in for MNIST; the test on the real data is marked slow and data."""
from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import torch

from conftest import MNIST_TEST, needs_data, real_data_root
from da.data import corrupted_digits, corruption_ports, corruptions
from da.data.cache import cache_paths
from da.data.corruptions import CORRUPTIONS, corrupt
from da.errors import DAError


def fake_digits(n: int) -> torch.Tensor:
    """Digit-like uint8 images (n, 28, 28): a bright bar, every other one with a top stroke (a 7)."""
    x = torch.zeros(n, 28, 28, dtype=torch.uint8)
    x[:, 6:22, 12:16] = 255
    x[1::2, 6:10, 8:20] = 255
    return x


def test_the_fifteen_corruptions_are_hendrycks_and_dietterichs():
    assert CORRUPTIONS == ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
                           "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
                           "jpeg_compression")
    assert corruptions.PER_PIXEL < set(CORRUPTIONS)


def test_every_corruption_changes_a_digit_and_severity_5_more_than_1():
    x = fake_digits(2)
    for name in CORRUPTIONS:
        mild, hard = (corrupt(x, name, severity, "test", 0, processes=1) for severity in (1, 5))
        assert mild.shape == (2, 28, 28) and mild.dtype == torch.uint8
        change = [(c.float() - x.float()).abs().mean() for c in (mild, hard)]
        assert 0 < change[0] < change[1], (name, change)


def test_every_corruption_is_seeded():
    x = fake_digits(2)
    for name in CORRUPTIONS:
        assert torch.equal(corrupt(x, name, 3, "train", 7, processes=1), corrupt(x, name, 3, "train", 7, processes=1)), name


def test_an_images_corruption_depends_on_its_index_not_on_the_chunking(monkeypatch):
    x = fake_digits(6)
    for name in ("impulse_noise", "glass_blur", "frost", "snow"):
        whole = corrupt(x, name, 5, "test", 0, processes=1)
        monkeypatch.setattr(corruptions, "CHUNK", 2)
        assert torch.equal(corrupt(x, name, 5, "test", 0, processes=1), whole)
        monkeypatch.undo()
        assert torch.equal(corrupt(x[3:], name, 5, "test", 0, indices=torch.arange(3, 6), processes=1), whole[3:])
        assert not torch.equal(corrupt(x, name, 5, "test", 1, processes=1), whole)  # another seed
        assert not torch.equal(corrupt(x, name, 5, "train", 0, processes=1), whole)  # another split


@pytest.mark.slow
def test_worker_processes_give_the_same_images(monkeypatch):
    monkeypatch.setattr(corruptions, "CHUNK", 3)
    x = fake_digits(6)
    assert torch.equal(corrupt(x, "shot_noise", 5, "test", 0, processes=2), corrupt(x, "shot_noise", 5, "test", 0, processes=1))


@pytest.mark.parametrize("name", ["glass_blur", "fog", "frost", "zoom_blur"])
def test_the_ports_give_the_packages_images(name, monkeypatch):
    import skimage.filters
    from imagecorruptions import corruptions as package
    from PIL import Image

    gaussian = skimage.filters.gaussian  # the package's calls, with the arguments today's libraries took away
    monkeypatch.setattr(package, "gaussian", lambda *a, multichannel=False, **k: gaussian(
        *a, **({**k, "channel_axis": -1} if multichannel else k)))
    monkeypatch.setattr(np, "float_", np.float64, raising=False)
    grey = np.random.RandomState(0).randint(0, 256, (32, 32)).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for severity in (1, 5):
        np.random.seed(severity)
        expected = np.asarray(getattr(package, name)(Image.fromarray(rgb), severity))
        np.random.seed(severity)
        assert np.array_equal(corruption_ports.PORTS[name](rgb, severity), expected), (name, severity)


def test_a_missing_package_and_bad_arguments_are_one_line(monkeypatch):
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    with pytest.raises(DAError, match="unknown corruption 'fogg'; one of gaussian_noise"):
        corrupt(fake_digits(1), "fogg", 3, "test", 0)
    with pytest.raises(DAError, match="severity must be 1-5, got 0"):
        corrupt(fake_digits(1), "fog", 0, "test", 0)
    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(DAError, match="need the package imagecorruptions, which is not installed; pip install imagecorruptions"):
        corruptions.package_version()


def test_each_corruption_and_severity_is_a_domain_cached_under_its_own_key(tmp_path, monkeypatch):
    monkeypatch.setattr(corrupted_digits, "TRAIN_SIZE", 6)
    y_train, y_test = torch.arange(10) % 10, torch.arange(4) % 10
    clean = ((fake_digits(10), y_train), (fake_digits(4), y_test))
    names = [("fog", 5), ("fog", 3), ("snow", 5)]
    domains = [corrupted_digits.load("mnist", clean, tmp_path, c, s) for c, s in names]
    assert [d.name for d in domains] == ["mnist_c/fog/5", "mnist_c/fog/3", "mnist_c/snow/5"]
    files = [path for c, s in names for path in cache_paths(tmp_path, f"mnist_c-{c}-{s}-seed0") if path.exists()]
    assert len(set(files)) == 3
    d = domains[0]
    index = corrupted_digits.train_subset(10)
    assert d.train.x.shape == (6, 1, 28, 28) and d.test.x.shape == (4, 1, 28, 28) and d.num_classes == 10
    assert torch.equal(d.train.y, y_train[index]) and torch.equal(d.test.y, y_test)  # the clean labels
    assert d.train.x.min() >= -1 and d.train.x.max() <= 1
    monkeypatch.setattr(corrupted_digits, "build", lambda *a, **k: pytest.fail("read from the cache, not rebuilt"))
    assert torch.equal(corrupted_digits.load("mnist", clean, tmp_path, "fog", 5).test.x, d.test.x)


@pytest.mark.slow
@pytest.mark.data
@needs_data
def test_mnist_c_and_usps_c_from_the_real_data():
    root = real_data_root()
    d = corrupted_digits.mnist_c(root, False, "target", corruption="contrast", severity=1)
    assert d.name == "mnist_c/contrast/1" and d.train.x.shape == (10_000, 1, 28, 28) and d.test.x.shape == (10_000, 1, 28, 28)
    assert torch.bincount(d.test.y, minlength=10).tolist() == MNIST_TEST
    u = corrupted_digits.usps_c(root, False, "target", corruption="contrast", severity=1)
    assert u.train.x.shape == (7291, 1, 28, 28) and u.test.x.shape == (2007, 1, 28, 28)
    assert d.test.x.std() < 0.9 * corrupted_digits.to_unit_range(corrupted_digits.mnist_uint8(root, False, False)[0]).std()

"""MNIST's IDX files read without torchvision, USPS decoded once into a cache, and where caches go
when the data root cannot be written to. Small files written by the tests stand in for the real ones."""
from __future__ import annotations

import bz2
import os
import warnings

import numpy as np
import pytest
import torch

from da.data import cache, digits
from da.errors import DAError


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root, n_train: int = 30, n_test: int = 10, seed: int = 0) -> dict[bool, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    made = {}
    for train, n in ((True, n_train), (False, n_test)):
        x, y = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
        images, labels = digits.MNIST_FILES[train]
        write_idx(raw / images, x)
        write_idx(raw / labels, y)
        made[train] = (x, y)
    return made


def write_usps(root, n_train: int = 20, n_test: int = 8, seed: int = 0) -> None:
    """LIBSVM text as torchvision's USPS reads it: label 1..10, 256 pixels in [-1, 1]."""
    rng = np.random.default_rng(seed)
    for name, n in (("usps.bz2", n_train), ("usps.t.bz2", n_test)):
        lines = []
        for _ in range(n):
            pixels = " ".join(f"{i + 1}:{v:.4f}" for i, v in enumerate(rng.uniform(-1, 1, 256)))
            lines.append(f"{rng.integers(1, 11)} {pixels}\n")
        (root / name).write_bytes(bz2.compress("".join(lines).encode()))


def test_mnist_idx_files_read_directly_match_torchvision(tmp_path):
    made = write_mnist(tmp_path)
    from torchvision.datasets import MNIST

    for train in (True, False):
        x, y = digits.mnist_uint8(tmp_path, False, train)
        ref = MNIST(str(tmp_path), train=train, download=False)
        assert torch.equal(x, ref.data) and torch.equal(y, ref.targets.long())
        assert torch.equal(x, torch.from_numpy(made[train][0].astype(np.uint8)))
    d = digits.mnist(tmp_path, False, "source")
    assert d.train.x.shape == (30, 1, 28, 28) and -1 <= d.train.x.min() < d.train.x.max() <= 1


def test_a_truncated_idx_file_gets_one_clear_error(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / digits.MNIST_FILES[True][0]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DAError, match="truncated"):
        digits.mnist(tmp_path, False, "source")


def test_usps_is_decoded_once_then_read_from_the_cache_and_decoded_again_when_a_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("DA_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "data"
    root.mkdir()
    write_usps(root)
    decoded = []
    real = digits._decode_usps
    monkeypatch.setattr(digits, "_decode_usps", lambda *a: decoded.append(1) or real(*a))
    first = digits._usps_splits.__wrapped__(root, False)
    again = digits._usps_splits.__wrapped__(root, False)
    assert len(decoded) == 1 and torch.equal(first[0].x, again[0].x) and torch.equal(first[1].y, again[1].y)
    assert first[0].x.shape == (20, 1, 28, 28) and first[1].x.shape == (8, 1, 28, 28)
    assert not (root / "generated").exists()  # the user's data root is left as it was
    write_usps(root, seed=1)  # the files are replaced: their cache no longer matches
    os.utime(root / "usps.bz2", ns=(1, 1))
    changed = digits._usps_splits.__wrapped__(root, False)
    assert len(decoded) == 2 and not torch.equal(changed[0].x, first[0].x)


def test_a_cache_that_cannot_go_under_the_data_root_goes_to_the_user_cache_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("DA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "a_file"
    root.write_text("not a folder: nothing can be written under it")
    built = []

    def build():
        built.append(1)
        return {"x": torch.arange(10, dtype=torch.uint8)}

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "built for this run only": the user cache folder took it
        first = cache.cached(root, "t", {"v": 1}, build)
    assert len(built) == 1 and list((tmp_path / "xdg" / "da").glob("t-*.pt"))
    assert torch.equal(cache.cached(root, "t", {"v": 1}, build)["x"], first["x"]) and len(built) == 1


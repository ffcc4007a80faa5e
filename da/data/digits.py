"""MNIST and USPS through torchvision, each split loaded once into tensors.

USPS's 16x16 images are resized once to 28x28 (bilinear), as in Transfer-Learning-Library's
digits benchmark, so both domains share LeNet's 28x28 input. ``mnist_parity`` is MNIST with
another label set (even / odd), a new task for a digits-pretrained extractor.

Start-up matters for short runs: MNIST's IDX files are read here directly when they are on disk
(torchvision, whose import alone takes seconds, is only imported to download them), and USPS's
bz2 text files, seconds to parse, are decoded once into a cache (``da.data.cache``).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from da.data.cache import cached
from da.data.dataset_entry import register_dataset
from da.data.domain import DomainData, Split, to_unit_range
from da.errors import DAError

SIZE = 28


def _load(cls: type, name: str, root: Path, download: bool, expected: str, **split_kw):
    try:
        return cls(str(root), download=download, **split_kw)
    except Exception as exc:  # torchvision raises RuntimeError when missing, URLError/OSError offline
        how = "download was off (data.download: false)" if not download else f"the download failed ({_first_line(exc)})"
        raise DAError(
            f"{name} is not under {root} ({expected}) and {how}; point DA_DATA_ROOT or data.root "
            f"at a folder that holds it, or run once with network access to download it"
        ) from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


#: MNIST's IDX files in torchvision's layout, per split: (images, labels).
MNIST_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: Path) -> Tensor:
    """An uncompressed IDX file of unsigned bytes (LeCun's MNIST format) as a uint8 tensor."""
    data = path.read_bytes()
    if len(data) < 4 or data[:3] != b"\0\0\x08":
        raise DAError(f"{path} is not an IDX file of unsigned bytes; delete it and let torchvision download MNIST again")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DAError(f"{path} holds {body.size} bytes for shape {shape}: it is truncated; delete it and download MNIST again")
    return torch.from_numpy(body.copy()).view(shape)


def mnist_uint8(root: Path, download: bool, train: bool) -> tuple[Tensor, Tensor]:
    """MNIST's (images uint8 (N, 28, 28), labels int64) for one split, read from ``root/MNIST/raw``."""
    raw = Path(root) / "MNIST" / "raw"
    images, labels = (raw / name for name in MNIST_FILES[train])
    if not (images.is_file() and labels.is_file()):
        from torchvision.datasets import MNIST

        ds = _load(MNIST, "MNIST", root, download, "expected MNIST/raw/*-ubyte", train=train)
        return ds.data, ds.targets.long()
    return read_idx(images), read_idx(labels).long()


@register_dataset("mnist", num_classes=10)
def mnist(root: Path, download: bool, role: str) -> DomainData:
    """MNIST: 60,000 train and 10,000 test handwritten digits, 28x28."""
    splits = {}
    for train in (True, False):
        x, y = mnist_uint8(root, download, train)
        splits[train] = Split(to_unit_range(x), y)
    return DomainData("mnist", splits[True], splits[False], num_classes=10)


@register_dataset("usps", num_classes=10)
def usps(root: Path, download: bool, role: str) -> DomainData:
    """USPS: 7,291 train and 2,007 test digits, 16x16, resized to 28x28 (bilinear)."""
    train, test = _usps_splits(Path(root), download)
    return DomainData("usps", train, test, num_classes=10)


USPS_FILES = {True: "usps.bz2", False: "usps.t.bz2"}


def _decode_usps(root: Path, download: bool) -> dict[str, Tensor]:
    """USPS's 16x16 uint8 images and labels, parsed from the bz2 text files by torchvision."""
    from torchvision.datasets import USPS

    out = {}
    for train, part in ((True, "train"), (False, "test")):
        ds = _load(USPS, "USPS", root, download, "expected usps.bz2 and usps.t.bz2", train=train)
        out[f"x_{part}"] = torch.from_numpy(np.asarray(ds.data, dtype=np.uint8))
        out[f"y_{part}"] = torch.as_tensor(ds.targets, dtype=torch.long)
    return out


@functools.lru_cache(maxsize=2)
def _usps_splits(root: Path, download: bool) -> tuple[Split, Split]:
    """USPS's train and test splits, decoded once per process and cached on disk for the next ones:
    parsing its bz2 text files takes seconds. The cache's recipe names the files' sizes and times,
    so a replaced file is decoded again. The tensors are shared: nothing writes to them."""
    files = {name: (root / name).stat() for name in USPS_FILES.values() if (root / name).is_file()}
    recipe = {"decoder": "usps", "version": 1, "files": {k: [st.st_size, st.st_mtime_ns] for k, st in files.items()}}
    if len(files) < len(USPS_FILES):  # not there yet: torchvision downloads (or says it cannot); no cache
        t = _decode_usps(root, download)
    else:
        t = cached(root, "usps-decoded", recipe, lambda: _decode_usps(root, download), in_root=False)
    splits = []
    for part in ("train", "test"):
        x = F.interpolate(to_unit_range(t[f"x_{part}"]), size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        splits.append(Split(x.clamp_(-1, 1), t[f"y_{part}"]))
    return splits[0], splits[1]


@register_dataset("mnist_parity", num_classes=2)
def mnist_parity(root: Path, download: bool, role: str) -> DomainData:
    """MNIST relabelled by parity: 0 even, 1 odd (a new two-class task on the same images)."""
    d = mnist(root, download, role)
    return DomainData("mnist_parity", Split(d.train.x, d.train.y % 2), Split(d.test.x, d.test.y % 2), num_classes=2)

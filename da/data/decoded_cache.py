"""A decoded image cache: every image decoded and resized once into a uint8 array on disk,
memory-mapped, so later epochs (and later runs) skip JPEG decoding.

The idea of FFCV's and DALI's pipelines (Leclerc et al., "FFCV", CVPR 2023): decoding dominates the
cost of reading small images. Each row holds an image after the transform's leading fixed-size
``Resize`` (e.g. 256 x 256 for the Office presets); the random crops and flips still run per epoch
on the cached pixels, and give the same tensors as from the files (the same resize on the same
decoded pixels). The file is named by a hash of the file list (paths, sizes, modification times),
the channels and the size, so a changed data set builds a new cache.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from da.errors import DAError

VERSION = 1


class DecodedCache:
    """Rows of uint8 (C, H, W) images in ``path`` (a raw array file), opened lazily in each process."""

    def __init__(self, path: Path, shape: tuple[int, int, int, int]) -> None:
        self.path, self.shape = Path(path), tuple(shape)
        self._array: Optional[np.memmap] = None

    def read(self, row: int) -> Tensor:
        if self._array is None:
            self._array = np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape)
        return torch.from_numpy(np.array(self._array[row]))

    def __getstate__(self) -> dict[str, Any]:  # a worker started by spawn opens its own map
        return {"path": self.path, "shape": self.shape, "_array": None}


def cache_key(paths: list[Path], channels: int, size: tuple[int, int], resize: str) -> str:
    digest = hashlib.sha1(f"{VERSION} {channels} {size} {resize}".encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"\n{path} {stat.st_size} {stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


class _Resized(torch.utils.data.Dataset):
    def __init__(self, dataset, step) -> None:
        self.dataset, self.step = dataset, step

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor:
        from torchvision import tv_tensors

        return self.step(tv_tensors.Image(self.dataset.decode(index))).as_subclass(Tensor)


def open_cache(folder: Path, dataset, step, size: tuple[int, int], num_workers: int,
               echo=print) -> DecodedCache:
    """The cache of ``dataset``'s files (an ``ImageDataset``) resized by ``step``: built on first use."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DAError(f"data.cache: cannot create the cache folder {folder} ({exc.strerror}); "
                      f"point data.cache at a writable folder") from None
    paths = [Path(p) for p in dataset.paths]
    key = cache_key(paths, dataset.channels, size, repr(step))
    shape = (len(paths), dataset.channels, *size)
    data, meta = folder / f"{key}.u8", folder / f"{key}.json"
    if meta.is_file() and data.is_file() and data.stat().st_size == int(np.prod(shape)):
        return DecodedCache(data, shape)
    need = int(np.prod(shape))
    free = _free_bytes(folder)
    if free is not None and free < need:
        raise DAError(f"data.cache: {folder} has {free / 1e9:.1f} GB free and the cache needs {need / 1e9:.1f} GB; "
                      f"free space, point data.cache elsewhere, or drop data.cache")
    echo(f"decoding {len(paths)} images of {dataset.where if hasattr(dataset, 'where') else folder} into the cache "
         f"{data} ({need / 1e6:.0f} MB)")
    tmp = data.with_suffix(f".u8.tmp{os.getpid()}")
    array = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape)
    loader = torch.utils.data.DataLoader(_Resized(dataset, step), batch_size=64, num_workers=num_workers)
    row = 0
    for batch in loader:
        array[row : row + len(batch)] = batch.numpy()
        row += len(batch)
    array.flush()
    del array
    os.replace(tmp, data)
    meta.write_text(json.dumps({"version": VERSION, "images": len(paths), "shape": list(shape), "resize": repr(step),
                                "first": str(paths[0]) if paths else None}))
    return DecodedCache(data, shape)


def _free_bytes(folder: Path) -> Optional[int]:
    try:
        stat = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return stat.f_bavail * stat.f_frsize

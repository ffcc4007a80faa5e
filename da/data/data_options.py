"""The ``data`` keys that shape file-backed domains, checked against the data sets a config names."""
from __future__ import annotations

from typing import Any

from da.config.schema import Config
from da.data.dataset_entry import dataset_entry
from da.data.transforms import check_transform_spec
from da.errors import DAError


def _file_backed(name: Any) -> bool:
    """Whether ``data.source`` / ``data.target`` is an image folder or list (a list of sources is not)."""
    return not isinstance(name, list) and dataset_entry(name).image_spec is not None


def check_data_options(config: Config) -> None:
    """The ``data`` keys of image data sets and ``model.weights`` (one-line DAErrors)."""
    data = config.data
    files = [_file_backed(name) for name in (data.source, data.target)]
    if data.transforms is not None:
        if not isinstance(data.transforms, dict):
            raise DAError(f"config key data.transforms must be a mapping {{train: ..., test: ...}}, got {data.transforms!r}")
        for k, v in data.transforms.items():
            if k not in ("train", "test"):
                raise DAError(f"config key data.transforms.{k} is not known; data.transforms takes train and test")
            check_transform_spec(v, f"data.transforms.{k}")
        if not any(files):
            raise DAError("config key data.transforms applies to image folders and lists, and both data.source and "
                          "data.target are in-memory data sets; remove it (data.augment transforms in-memory batches)")
    if not isinstance(data.cache, (bool, str)):
        raise DAError(f"config key data.cache must be true, false or a folder, got {data.cache!r}")
    workers = data.num_workers
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise DAError(f"config key data.num_workers must be a non-negative integer (0: load in the main process), got {workers!r}")
    if config.model.weights is not None and config.model.pretrained:
        raise DAError("config keys model.weights and model.pretrained both ask for weights; keep model.weights "
                      "(a local file) or model.pretrained: true (downloaded), not both")

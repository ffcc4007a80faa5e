"""The five splits a run uses, built from the config's source and target datasets."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from da.config import DataConfig
from da.data import DomainData, Split
from da.errors import DAError
from da.registry import DATASETS


@dataclass
class Domains:
    """Source train / validation / test, target train (labels hidden) and target test."""

    source_train: Split
    source_val: Split
    source_test: Split
    target_train: Split  # labels replaced by -1: training and selection cannot read them
    target_test: Split
    num_classes: int
    #: A fixed, seeded sample of target train images that unsupervised validators score.
    target_probe: torch.Tensor | None = None


def data_root(config: DataConfig) -> Path:
    """``data.root``, else ``$DA_DATA_ROOT``, else ``./data``."""
    return Path(config.root or os.environ.get("DA_DATA_ROOT") or "data")


PROBE_SIZE = 2000  # target train images scored by the validators at each evaluation


def load_domains(config: DataConfig, device: torch.device) -> Domains:
    root = data_root(config)
    source: DomainData = DATASETS.get(config.source)(root, config.download, "source")
    target: DomainData = DATASETS.get(config.target)(root, config.download, "target")
    if source.num_classes != target.num_classes:
        raise DAError(f"source {config.source} has {source.num_classes} classes but target {config.target} has {target.num_classes}")
    n = len(source.train)
    if config.source_val_size >= n:
        raise DAError(f"data.source_val_size={config.source_val_size} leaves no source training data ({n} images); lower it")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.split_seed))
    val, train = order[: config.source_val_size], order[config.source_val_size :]
    hidden = Split(target.train.x, torch.full_like(target.train.y, -1))
    probe = torch.randperm(len(hidden), generator=torch.Generator().manual_seed(config.split_seed))[:PROBE_SIZE]
    return Domains(
        source_train=source.train.subset(train).to(device),
        source_val=source.train.subset(val).to(device),
        source_test=source.test.to(device),
        target_train=hidden.to(device),
        target_test=target.test.to(device),
        num_classes=source.num_classes,
        target_probe=hidden.x[probe].to(device),
    )

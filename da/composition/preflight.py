"""Checks that need the data's sizes, made before a run folder exists (and by ``--dry-run``): a
batch larger than the split it is drawn from, what loading the splits refuses (a validation
split larger than the training set, more labels per class than a class holds), and an adapter
setting of the right type that the adapter still refuses (built once, at the data's class count)."""
from __future__ import annotations

import torch

from da.composition.label_shift import check_label_sets
from da.composition.model import build_adapter
from da.composition.stages import build_stage, stage_specs
from da.config import Config
from da.data.multi_source import smallest_source
from da.domains import Domains, load_domains
from da.errors import DAError
from da.registry import BACKBONES


def preflight(config: Config, device: torch.device, world_size: int = 1) -> Domains:
    """The run's splits, loaded once, after checking every batch fits the split it is drawn from."""
    domains = load_domains(config.data, device, config.model.backbone)
    per = f" x {world_size} ranks" if world_size > 1 else ""
    source, n_source = smallest_source(domains.source_train)  # several sources: a batch from each
    draws = [("pretrain.batch_size", config.pretrain.batch_size, source, n_source)]
    if config.train.steps > 0:
        draws += [("train.batch_size", config.train.batch_size, source, n_source),
                  ("train.batch_size", config.train.batch_size, "target train", len(domains.target_train))]
    if config.pretrain.steps == 0 or config.pretrain.checkpoint:
        draws = draws[1:]
    for key, size, split, n in draws:
        if size * world_size > n:
            raise DAError(f"config key {key}={size}{per} exceeds the {n} images of {split} "
                          f"(data.source {config.data.source}, data.target {config.data.target}); lower it to at most "
                          f"{n // world_size}")
    stages = [build_stage(name, kwargs) for name, kwargs in stage_specs(config)]
    for stage in stages:
        stage.check_data(config, domains)
    check_label_sets(config, domains, stages)
    width = config.model.bottleneck or BACKBONES.get(config.model.backbone).out_features
    if width is not None:  # a backbone whose width is known once built: its adapter is checked as the run builds it
        with torch.random.fork_rng(devices=[]):  # the run's seeded draws stay as they were
            build_adapter(config, width, domains.num_classes)
    if len(domains.source_val) == 0:
        raise DAError("config key data.source_val_size is 0: evaluation and model selection need source validation "
                      "images; give it a positive size (e.g. 1000)")
    return domains

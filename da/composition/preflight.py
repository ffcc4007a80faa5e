"""Checks that need the data's sizes, made before a run folder exists (and by ``--dry-run``): a
batch larger than the split it is drawn from, what loading the splits refuses (a validation
split larger than the training set, more labels per class than a class holds), and an adapter
setting of the right type that the adapter still refuses (built once, at the data's class count),
and backbone weights that do not fit or cannot be found."""
from __future__ import annotations

import torch

from da.composition.label_shift import check_label_sets
from da.composition.model import build_adapter
from da.composition.stages import build_stage, stage_specs
from da.config import Config
from da.data.multi_source import smallest_source
from da.domains import Domains, load_domains
from da.errors import DAError
from da.models.backbone_entry import BackboneEntry, backbone_entry
from da.models.pretrained import load_weights


def check_weights(config: Config, entry: BackboneEntry, channels: int) -> None:
    """A weights file that does not fit, or timm weights not in the cache: found now, on the backbone
    built on the meta device (no memory, no initialisation), rather than once the run folder exists."""
    if not (config.model.weights or (config.model.pretrained and entry.library == "timm")):
        return
    with torch.device("meta"):
        extractor = entry.build(pretrained=config.model.pretrained, in_channels=channels)
        if config.model.weights:
            load_weights(extractor, config.model.weights)


def preflight(config: Config, device: torch.device, world_size: int = 1) -> Domains:
    """The run's splits, loaded once, after checking every batch fits the split it is drawn from."""
    domains = load_domains(config.data, device, config.model)
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
    entry = backbone_entry(config.model)
    shape, want = tuple(domains.source_train.input_shape[1:]), tuple(entry.pretrained_cfg.input_size[1:])
    if entry.configure is not None and shape != want:  # timm / open_clip: built for one input size
        raise DAError(f"model.backbone {config.model.backbone} is built for {want[0]}x{want[1]} images and the data's are "
                      f"{shape[0]}x{shape[1]}; set model.input_size: {shape[0]}")
    check_weights(config, entry, domains.source_train.input_shape[0])
    width = config.model.bottleneck or entry.out_features
    if width is not None:  # a backbone whose width is known once built: its adapter is checked as the run builds it
        with torch.random.fork_rng(devices=[]):  # the run's seeded draws stay as they were
            build_adapter(config, width, domains.num_classes)
    if len(domains.source_val) == 0:
        raise DAError("config key data.source_val_size is 0: evaluation and model selection need source validation "
                      "images; give it a positive size (e.g. 1000)")
    return domains

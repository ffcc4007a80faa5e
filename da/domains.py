"""The five splits a run uses, built from the config's source and target datasets.

Each of ``data.source`` and ``data.target`` stands for a ``DatasetEntry`` (``da.data.dataset_entry``):
a registered name (``mnist``, ``amazon``), a registered name with options (``{name: mnist_c,
corruption: fog}``, ``da.data.dataset_options``) or an inline image folder or list (``{folder: DIR}``). The
entry loads the domain: in memory, or as file-backed splits (``da.data.image_domain``) read through
the backbone's input configuration.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

import da.models  # noqa: F401  (registers the built-in backbones, whose input configuration image folders use)
from da.config import DataConfig, ModelConfig
from da.data import DataSplit, DomainData
from da.data.channels import match_channels
from da.data.dataset_entry import dataset_spec, spec_label
from da.data.image_domain import ImageDomainData, ImageOptions, default_workers
from da.data.label_sets import LabelSets, class_names, restrict, split_classes
from da.data.multi_source import MultiSourceSplit, pool
from da.errors import DAError
from da.models.backbone_entry import backbone_entry
from da.models.pretrained import IMAGENET, PretrainedCfg
from da.registry import BACKBONES


@dataclass
class Domains:
    """Source train / validation / test, target train (labels hidden) and target test."""

    source_train: DataSplit
    source_val: DataSplit
    source_test: DataSplit
    target_train: DataSplit  # labels replaced by -1: training and selection cannot read them
    target_test: DataSplit
    num_classes: int
    #: A fixed, seeded sample of target train images (labels hidden) that unsupervised validators score.
    target_probe: DataSplit | None = None
    #: ``data.target_labels_per_class``: labelled target train images (true labels), and their
    #: indices into target train. The same images stay in ``target_train``, unlabelled.
    target_labelled: DataSplit | None = None
    target_labelled_index: torch.Tensor | None = None
    #: Image folders and lists: per domain, its classes, split sizes, how its test split was made and
    #: the unreadable files skipped (``data.skip_bad_images``); summary.json records it.
    image_data: dict[str, dict] | None = None
    #: The target domains, in ``data.target``'s order (one unless it lists a test-time stream).
    target_names: tuple[str, ...] = ()
    #: The classes of each domain and the setting they give (``da.data.label_sets``); target-private
    #: test images are labelled ``label_sets.unknown``.
    label_sets: LabelSets | None = None
    #: The source's class names in label order (an image folder's, else "0", "1", ...): zero-shot prompts.
    class_names: tuple[str, ...] = ()

    @property
    def setting(self) -> str:
        return self.label_sets.setting if self.label_sets is not None else "closed"

    def target_parts(self) -> torch.Tensor:
        """Each target test image's domain: its index into ``target_names``."""
        split = self.target_test
        return split.part if isinstance(split, MultiSourceSplit) else torch.zeros(len(split), dtype=torch.long)


def data_root(config: DataConfig) -> Path:
    """``data.root``, else ``$DA_DATA_ROOT``, else ``./data``."""
    return Path(config.root or os.environ.get("DA_DATA_ROOT") or "data")


PROBE_SIZE = 2000  # target train images scored by the validators at each evaluation
#: Added to data.split_seed for the labelled-target draw, so it is not the probe's permutation.
LABELS_SEED_OFFSET = 1_000_003


def draw_per_class(labels: torch.Tensor, k: int | str, seed: int, num_classes: int, what: str) -> torch.Tensor:
    """Indices of ``k`` items of every class (``"all"``: every item), drawn with ``seed``; sorted.

    The draw walks one seeded permutation and keeps the first ``k`` of each class, so the draws for
    k=1, 5, 10 with one seed are nested (each contains the smaller ones). Fewer than ``k`` items
    in a class is an error naming the class.
    """
    if k == "all":
        return torch.arange(len(labels))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    picked = []
    for c in range(num_classes):
        members = order[labels[order] == c]
        if len(members) < k:
            smallest = int(torch.bincount(labels, minlength=num_classes).min())
            raise DAError(f"data.target_labels_per_class={k} exceeds the {len(members)} images of class {c} in "
                          f"{what}; lower it to at most {smallest} (its smallest class)")
        picked.append(members[:k])
    return torch.cat(picked).sort().values


def input_cfg(backbone: str | ModelConfig | None) -> PretrainedCfg:
    """The input a registered backbone (or a config's ``model`` section: its input size too) takes
    (image folders are resized and normalised for it); ImageNet's when no backbone is named."""
    if isinstance(backbone, ModelConfig):
        return backbone_entry(backbone).pretrained_cfg
    return BACKBONES.get(backbone).pretrained_cfg if backbone else IMAGENET


def image_options(config: DataConfig) -> ImageOptions:
    """The ``data`` keys that shape a file-backed domain."""
    workers = default_workers() if config.num_workers is None else config.num_workers
    return ImageOptions(config.transforms or {}, config.cache, config.skip_bad_images, workers, config.split_seed)


def load_domain(config: DataConfig, role: str, backbone: str | ModelConfig | None, name: str | None = None) -> DomainData:
    """``data.source`` or ``data.target`` (or ``name``, one of several sources), loaded by its data set
    entry with its options."""
    entry, options = dataset_spec(getattr(config, role) if name is None else name, f"data.{role}")
    return entry.load(data_root(config), role, config.download, input_cfg(backbone), image_options(config), options)


def image_record(source: DomainData, target: DomainData) -> dict[str, dict] | None:
    """What summary.json records of file-backed domains (None when both are in memory)."""
    out = {}
    for role, d in (("source", source), ("target", target)):
        if isinstance(d, ImageDomainData):
            out[role] = {"name": d.name, "classes": len(d.classes), "train_images": len(d.train),
                         "test_images": len(d.test), "test_split": d.test_split, "skipped_images": len(d.skipped),
                         "skipped_files": [path for path, _ in d.skipped[:20]]}
    return out or None


def load_domains(config: DataConfig, device: torch.device, backbone: str | ModelConfig | None = None) -> Domains:
    """The run's splits; ``backbone`` (a registered name) gives image folders their input size and normalisation."""
    source = (pool([load_domain(config, "source", backbone, name) for name in config.source])  # multi-source
              if isinstance(config.source, list) else load_domain(config, "source", backbone))
    target = (pool([load_domain(config, "target", backbone, name) for name in config.target], "data.target")
              if isinstance(config.target, list) else load_domain(config, "target", backbone))  # a test-time stream
    source, target, sets = label_sets(config, source, target)
    n = len(source.train)
    if config.source_val_size >= n:
        raise DAError(f"data.source_val_size={config.source_val_size} leaves no source training data ({n} images); lower it")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.split_seed))
    val, train = order[: config.source_val_size], order[config.source_val_size :]
    if config.source_train_size:  # a seeded subsample: the first images of the same permutation
        if config.source_train_size > len(train):
            raise DAError(f"data.source_train_size={config.source_train_size} exceeds the {len(train)} source training "
                          f"images left after data.source_val_size={config.source_val_size}; lower either")
        train = train[: config.source_train_size]
    hidden = target.train.hide_labels()
    probe = torch.randperm(len(hidden), generator=torch.Generator().manual_seed(config.split_seed))[:PROBE_SIZE]
    labelled = index = None
    if config.target_labels_per_class:
        index = draw_per_class(target.train.y, config.target_labels_per_class,
                               config.split_seed + LABELS_SEED_OFFSET, target.num_classes, f"{spec_label(config.target)} train")
        labelled = target.train.subset(index).to(device)
    return match_channels(Domains(  # a grey domain beside a colour one: repeated to 3 channels
        source_train=source.train.subset(train).to(device),
        source_val=source.train.subset(val).to(device),
        source_test=source.test.to(device),
        target_train=hidden.to(device),
        target_test=target.test.to(device),
        num_classes=source.num_classes,
        target_probe=hidden.subset(probe).to(device),
        target_labelled=labelled,
        target_labelled_index=index,
        image_data=image_record(source, target),
        target_names=target.test.names if isinstance(target.test, MultiSourceSplit) else (target.name,),
        label_sets=sets,
        class_names=tuple(class_names(source)),
    ))


def label_sets(config: DataConfig, source: DomainData, target: DomainData) -> tuple[DomainData, DomainData, LabelSets]:
    """Source and target restricted to the classes their specs list, in one label space, and the
    label sets (``da.data.label_sets``). Several sources or targets keep the closed setting."""
    specs = (config.source, config.target)
    if any(isinstance(v, list) for v in specs):
        listed = [item for v in specs if isinstance(v, list) for item in v] + [v for v in specs if not isinstance(v, list)]
        if config.setting not in (None, "closed") or any(split_classes(v)[1] for v in listed):
            raise DAError("classes lists and data.setting apply to one source and one target; several sources or a "
                          "stream of targets must share every class")
        if source.num_classes != target.num_classes:
            raise DAError(f"source {source.name} has {source.num_classes} classes but target {target.name} has "
                          f"{target.num_classes}")
        names = class_names(source)
        return source, target, LabelSets(tuple(names), tuple(names))
    explicit = any(isinstance(v, dict) and "classes" in v for v in specs)
    return restrict(source, target, split_classes(config.source)[1], split_classes(config.target)[1],
                    config.setting, explicit)

"""``summary.json``: what a finished run reports (the output contract users and scripts read)."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch

from da.config import Config, flat_keys, to_dict
from da.domains import Domains
from da.models.backbone_entry import backbone_entry, backbone_record
from da.models.test_time_norm import norm_layers
from da.train.label_metrics import OPEN_METRICS
from da.train.model import confusion_matrix, per_class_accuracy
from da.train.run import Run
from da.train.selection import selections

#: summary.json fields that measure time, not results: they differ between otherwise equal runs.
TIMING_FIELDS = ("wall_s", "train_s", "train_imgs_per_s")


def flat_hparams(config: Config) -> dict[str, Any]:
    """The config as ``section.key: value`` pairs (TensorBoard's hparams tab)."""
    return flat_keys(to_dict(config))


def target_labels_record(config: Config, domains: Domains, indices: bool) -> dict[str, Any]:
    """Which labelled target images the run trains on: counts, and with ``indices`` their indices
    into the target train split (``target_labels.json`` always lists them; summary.json unless "all")."""
    y = domains.target_labelled.y
    return {"dataset": config.data.target, "split": "train", "per_class": config.data.target_labels_per_class,
            "split_seed": config.data.split_seed, "count": len(y),
            "class_counts": torch.bincount(y.cpu(), minlength=domains.num_classes).tolist(), "file": "target_labels.json",
            **({"indices": domains.target_labelled_index.tolist()} if indices else {})}


def make_summary(run: "Run") -> dict[str, Any]:
    """summary.json's fields, from the config and what the run carried to its end."""
    config, found, throughput = run.config, run.evaluations, run.throughput
    sets = run.domains.label_sets
    size = run.domains.num_classes + (1 if sets is not None and sets.open else 0)  # the open settings: unknown, last
    with run.model.eval_mode():
        confusion = confusion_matrix(run.model.labels("target", True), run.domains.target_test, size)
    return {
        "name": config.name, "adapter": config.adapter.name, "seed": config.seed,
        "source": config.data.source, "target": config.data.target, "backbone": config.model.backbone,
        # The input the images were resized and normalised to, the network's library and its start weights.
        **backbone_record(config.model, backbone_entry(config.model)),
        # What normalisation the extractor has: the layers test-time methods adapt (BatchNorm, LayerNorm, ...).
        "norm_layers": sorted({type(m).__name__ for m in norm_layers([run.model.extractor])}),
        "stages": [{"name": stage.name, "steps": n} for stage, n in zip(run.stages, run.stage_steps())],
        "pretrain_steps": config.pretrain.steps, "steps": config.train.steps, "batch_size": config.train.batch_size,
        "source_test_acc": found.accuracies["source_test_acc"], "target_test_acc": found.accuracies["target_test_acc"],
        "source_val_acc": found.accuracies["source_val_acc"],
        # The label sets (da.data.label_sets); the open settings add OS, OS*, UNK and the H-score.
        "setting": run.domains.setting,
        **({"label_sets": sets.record()} if sets is not None and sets.setting != "closed" else {}),
        **{k: found.accuracies[k] for k in OPEN_METRICS if k in found.accuracies},
        # Of the final model, which target classes it gets wrong and as what (rows: true class).
        "target_test_per_class_acc": per_class_accuracy(confusion), "target_test_confusion": confusion.tolist(),
        **{f"pretrain_{k}": v for k, v in found.pretrain.items()},
        # A test-time stage: its stream's predictions, scored as they were made (da.stages.test_time).
        **run.online.summary(),
        "wall_s": round(throughput.wall_s(), 2), "train_s": round(throughput.train_seconds, 3),
        # every rank's images: each rank trained throughput.images in the same time
        "train_imgs_per_s": round(throughput.images * run.dist.world_size / max(throughput.train_seconds, 1e-9), 1),
        "device": str(run.device), "torch": torch.__version__,
        "world_size": run.dist.world_size, "global_batch_size": config.train.batch_size * run.dist.world_size,
        "precision": run.precision.name, "compile": config.train.compile,
        "hparams": config.adapter.kwargs,
        **({"augment": asdict(config.data.augment)} if config.data.augment is not None else {}),
        **({"target_labels": target_labels_record(config, run.domains, indices=config.data.target_labels_per_class != "all")}
           if run.domains.target_labelled is not None else {}),
        **({"early_stopping": run.early_stopping.restored} if run.early_stopping.restored is not None else {}),
        # Image folders and lists: classes, split sizes, test split, unreadable files skipped per domain.
        **({"image_data": run.domains.image_data,
            "skipped_images": {k: v["skipped_images"] for k, v in run.domains.image_data.items()}}
           if run.domains.image_data else {}),
        # "oracle" reads target test labels: an upper bound, never a result.
        "selection": selections(found.history),
        "history": found.history,
    }

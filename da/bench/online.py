"""results.md's test-time section: online error per method x target stream, the layout of TENT's
and CoTTA's tables (Wang et al. 2021, 2022), with the source model and the offline methods beside.

A test-time run's figure is its ``online_acc``: each stream batch predicted before the method
updated on it (``da.stages.test_time``). An offline run (SHOT, self-training, ...) has no stream:
its figure is its final model's target test accuracy, marked so. The source model's figure is
``pretrain_target_test_acc`` of the runs, on the same images.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from da.bench.aggregate import adapter_rank

Row = Mapping[str, Any]
SOURCE = "source model"


def _error(values: list[float]) -> str:
    """Mean error (%) over seeds, ± the sample std when there is more than one seed."""
    errors = [100 * (1 - v) for v in values]
    mean = f"{statistics.fmean(errors):.1f}"
    return f"{mean} ± {statistics.stdev(errors):.1f}" if len(errors) > 1 else mean


def online_cells(rows: Sequence[Row]) -> tuple[dict[tuple[str, str], list[float]], set[str]]:
    """(method, direction) -> accuracies over seeds, and the methods that are offline. Runs whose source
    models differ in backbone (a GroupNorm LeNet for batch size 1 beside a BatchNorm one) get one
    source row per backbone, ``source model (lenet_gn)``."""
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    sources: dict[tuple[str, int, str], float] = {}
    offline = set()
    for row in rows:
        if row["selection"] != "last":
            continue
        online = row.get("online_acc")
        if online in (None, ""):
            offline.add(row["adapter"])
            cells[row["adapter"], row["direction"]].append(float(row["target_test_acc"]))
        else:
            cells[row["adapter"], row["direction"]].append(float(online))
        if row.get("pretrain_target_test_acc") not in (None, ""):
            sources[row["direction"], row["seed"], row.get("backbone") or ""] = float(row["pretrain_target_test_acc"])
    several = len({backbone for _, _, backbone in sources}) > 1
    for (direction, _, backbone), acc in sources.items():
        cells[f"{SOURCE} ({backbone})" if several else SOURCE, direction].append(acc)
    return cells, offline


def online_section(rows: Sequence[Row], speeds: Sequence[Row] = ()) -> list[str]:
    """The section's markdown lines (none when no run of the benchmark is a test-time one). ``speeds``:
    one row per finished run (adapter, images_per_s, online, batch_size: the stream's batch size)."""
    if not any(row.get("online_acc") not in (None, "") for row in rows):
        return []
    cells, offline = online_cells(rows)
    directions = sorted({d for _, d in cells})
    source_rows = sorted({m for m, _ in cells if m.startswith(SOURCE)})
    methods = sorted({m for m, _ in cells} - set(source_rows), key=adapter_rank)
    lines = ["## Test-time adaptation: online error (%)", "",
             "Error of each stream batch's predictions, made before the method updated on that batch, over the "
             "whole stream; mean ± sample std over seeds. `source model`: the source model's error on the same images. "
             "Methods marked † are offline (they adapt on the target train split first): their final model's "
             "target test error.", "",
             "| method | " + " | ".join(d.split("->", 1)[-1] for d in directions) + " | mean |",
             "|---" * (len(directions) + 2) + "|"]
    for method in [*source_rows, *methods]:
        values = [cells.get((method, d)) for d in directions]
        means = [statistics.fmean(v) for v in values if v]
        mean = f"{100 * (1 - statistics.fmean(means)):.1f}" if len(means) == len(directions) else ""
        label = f"{method} †" if method in offline else method
        lines.append(f"| {label} | " + " | ".join(_error(v) if v else "" for v in values) + f" | {mean} |")
    lines.append("")
    lines += _speed_lines(speeds)
    return lines


def _speed_lines(speeds: Sequence[Row]) -> list[str]:
    """Images/s of each method's stream (a benchmark figure: it depends on what else ran beside)."""
    per: dict[str, list[float]] = defaultdict(list)
    batch: dict[str, int | None] = {}
    for row in speeds:
        if row.get("online"):
            per[row["adapter"]].append(float(row["images_per_s"]))
            batch[row["adapter"]] = row.get("batch_size")  # None: a run folder without its stream.json
    if not per:
        return []
    lines = ["Stream throughput (images/s, mean over runs; predict + update, evaluation excluded):", "",
             "| method | batch | images/s | ms per batch |", "|---|---|---|---|"]
    for method in sorted(per, key=adapter_rank):
        rate = statistics.fmean(per[method])
        size = batch[method]
        ms = f"{1000 * size / rate:.1f}" if size else ""
        lines.append(f"| {method} | {size or ''} | {rate:.0f} | {ms} |")
    return [*lines, ""]

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
    errors = [100 * (1 - v) for v in values]
    std = statistics.stdev(errors) if len(errors) > 1 else 0.0
    return f"{statistics.fmean(errors):.1f} ± {std:.1f}"


def online_cells(rows: Sequence[Row]) -> tuple[dict[tuple[str, str], list[float]], set[str]]:
    """(method, direction) -> accuracies over seeds, and the methods that are offline."""
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    sources: dict[tuple[str, int], float] = {}
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
            sources[row["direction"], row["seed"]] = float(row["pretrain_target_test_acc"])
    for (direction, _), acc in sources.items():
        cells[SOURCE, direction].append(acc)
    return cells, offline


def online_section(rows: Sequence[Row], speeds: Sequence[Row] = ()) -> list[str]:
    """The section's markdown lines (none when no run of the benchmark is a test-time one). ``speeds``:
    one row per finished run (adapter, images_per_s)."""
    if not any(row.get("online_acc") not in (None, "") for row in rows):
        return []
    cells, offline = online_cells(rows)
    directions = sorted({d for _, d in cells})
    methods = sorted({m for m, _ in cells} - {SOURCE}, key=adapter_rank)
    lines = ["## Test-time adaptation: online error (%)", "",
             "Error of each stream batch's predictions, made before the method updated on that batch, over the "
             "whole stream; mean ± std over seeds. `source model`: the source model's error on the same images. "
             "Methods marked † are offline (they adapt on the target train split first): their final model's "
             "target test error.", "",
             "| method | " + " | ".join(d.split("->", 1)[-1] for d in directions) + " | mean |",
             "|---" * (len(directions) + 2) + "|"]
    for method in [SOURCE, *methods]:
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
    for row in speeds:
        if row.get("online"):
            per[row["adapter"]].append(float(row["images_per_s"]))
    if not per:
        return []
    lines = ["Stream throughput (images/s, mean over runs; predict + update, evaluation excluded):", "",
             "| method | images/s | ms per batch of 64 |", "|---|---|---|"]
    for method in sorted(per, key=adapter_rank):
        rate = statistics.fmean(per[method])
        lines.append(f"| {method} | {rate:.0f} | {64000 / rate:.1f} |")
    return [*lines, ""]

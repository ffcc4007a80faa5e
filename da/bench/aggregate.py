"""A benchmark's result rows and what is computed from them: results.csv, the mean and std per
(direction, adapter, selection), and the run each label-free rule picks among a grid's settings.

Every row is one (adapter, direction, seed, selection): the accuracy of the checkpoint that a
selection rule picked. "oracle" picks by target test accuracy and is an upper bound only.
"""
from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from da.run_files import write_text_atomic
from da.validators import CLASSIC, VALIDATORS

COLUMNS = ("adapter", "direction", "seed", "selection", "step", "target_test_acc", "source_test_acc",
           "wall_s", "run")
SELECTIONS = ("last", *VALIDATORS, "oracle")  # as summary.json["selection"] lists them
#: The columns of results.md's main tables: the validators beyond these are graded in validators.md.
TABLE_SELECTIONS = ("last", *CLASSIC, "oracle")
FIRST, LAST = "source_only", "target_only"

Row = Mapping[str, Any]


def check_rows(rows: Sequence[Row]) -> None:
    seen = set()
    for row in rows:
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise ValueError(f"result row lacks {', '.join(missing)}: {dict(row)}")
        key = (row["adapter"], row["direction"], row["seed"], row["selection"])
        if key in seen:
            raise ValueError(f"two result rows for adapter, direction, seed, selection = {key}")
        seen.add(key)


def selection_rank(selection: str) -> tuple[int, str]:
    return (SELECTIONS.index(selection), "") if selection in SELECTIONS else (len(SELECTIONS), selection)


def adapter_rank(adapter: str) -> tuple[int, list[tuple[int, float, str]]]:
    """source_only first, target_only last, the rest by name with numbers in order of value, so
    the settings of a grid line up as ``weight=0.3``, ``weight=3``, ``weight=10``."""
    parts = [(1, float(p), "") if i % 2 else (0, 0.0, p) for i, p in enumerate(_NUMBER.split(adapter))]
    return (0 if adapter == FIRST else 2 if adapter == LAST else 1), parts


_NUMBER = re.compile(r"(\d+(?:\.\d*)?(?:e[-+]?\d+)?)")


def write_csv(path: Path | str, rows: Sequence[Row]) -> None:
    """Write results.csv atomically: the columns of :data:`COLUMNS` (extra keys after them, sorted),
    rows sorted by direction, adapter, seed and selection (selections in :data:`SELECTIONS` order)."""
    check_rows(rows)
    extra = sorted({k for row in rows for k in row} - set(COLUMNS))
    ordered = sorted(rows, key=lambda r: (r["direction"], r["adapter"], r["seed"], selection_rank(r["selection"])))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*COLUMNS, *extra], lineterminator="\n")
    writer.writeheader()
    writer.writerows(ordered)
    write_text_atomic(Path(path), buf.getvalue())


def summarize(rows: Sequence[Row], metric: str = "target_test_acc") -> list[dict[str, Any]]:
    """Mean, sample std (ddof=1; 0 for one seed) and n of ``metric`` per (direction, adapter, selection).

    Values stay fractions, as in the rows. Sorted by direction, adapter (source_only first,
    target_only last) and selection.
    """
    check_rows(rows)
    groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for row in rows:
        groups[row["direction"], row["adapter"], row["selection"]].append(float(row[metric]))
    out = []
    for (direction, adapter, selection), values in groups.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append({"direction": direction, "adapter": adapter, "selection": selection,
                    "mean": statistics.fmean(values), "std": std, "n": len(values)})
    out.sort(key=lambda s: (s["direction"], adapter_rank(s["adapter"]), selection_rank(s["selection"])))
    return out


def pick_settings(rows: Sequence[Row], selection: str) -> dict[int, Row]:
    """Per seed, the row of one grid (rows of one direction and family) that ``selection`` picks
    among its settings: the best score at each setting's picked step, the scores of different runs
    compared as they are. Ties go to the setting listed first; rows without a finite score are passed over."""
    picked: dict[int, Row] = {}
    for row in rows:
        score = row.get("score")
        if row["selection"] != selection or score in (None, "") or math.isnan(float(score)):
            continue
        best = picked.get(row["seed"])
        if best is None or float(score) > float(best["score"]):
            picked[row["seed"]] = row
    return picked

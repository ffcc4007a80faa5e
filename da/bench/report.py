"""A benchmark's report: results.csv, results.md (our figures beside published ones), accuracy.png.

The parts live by responsibility: ``da.bench.aggregate`` (result rows, results.csv, mean and std,
label-free picks), ``da.bench.tables`` (results.md), ``da.bench.plots`` (accuracy.png) and
``da.bench.published`` (the published figures of anchors.yaml). This module keeps the names
``from da.bench.report import ...`` has always given.
"""
from __future__ import annotations

from da.bench.aggregate import (
    COLUMNS,
    FIRST,
    LAST,
    SELECTIONS,
    TABLE_SELECTIONS,
    Row,
    check_rows,
    pick_settings,
    summarize,
    write_csv,
)
from da.bench.plots import accuracy_figure, accuracy_plot
from da.bench.published import ADAPTER_METHODS, DIRECTION_KEYS, Anchor, adapter_method, load_anchors
from da.bench.tables import ADAPTER_NOTES, SELECTION_HEADERS, augmentation_note, markdown

__all__ = [
    "ADAPTER_METHODS", "ADAPTER_NOTES", "COLUMNS", "DIRECTION_KEYS", "FIRST", "LAST", "SELECTIONS",
    "SELECTION_HEADERS", "TABLE_SELECTIONS", "Anchor", "Row", "accuracy_figure", "accuracy_plot", "adapter_method", "augmentation_note",
    "check_rows", "load_anchors", "markdown", "pick_settings", "summarize", "write_csv",
]

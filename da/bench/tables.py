"""results.md: a benchmark's tables in Markdown (adapters x selection rules per direction, the
settings and adapters label-free rules pick, per-class accuracy, published figures, compute)."""
from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from da.bench.aggregate import FIRST, LAST, TABLE_SELECTIONS, Row, adapter_rank, pick_settings, selection_rank, summarize
from da.bench.published import Anchor, adapter_method
from da.validators import VALIDATORS

SELECTION_HEADERS = {"oracle": "oracle (target test, upper bound only)"}
ADAPTER_NOTES = {FIRST: "no adaptation", LAST: "upper bound: trained on target labels"}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


class _Table:
    """Summary cells of one direction, formatted "mean ± std" in percent; n noted once per table."""

    def __init__(self, stats: Iterable[dict[str, Any]]) -> None:
        self.stats = {(s["adapter"], s["selection"]): s for s in stats}
        counts = [s["n"] for s in self.stats.values()]
        self.n = max(counts, key=lambda n: (counts.count(n), n)) if counts else 0

    def cell(self, adapter: str, selection: str) -> str:
        s = self.stats.get((adapter, selection))
        if s is None:
            return "–"
        text = _percent(s["mean"], s["std"], s["n"])
        return text if s["n"] == self.n else f"{text} (n = {s['n']})"

    def n_note(self) -> str:
        mixed = any(s["n"] != self.n for s in self.stats.values())
        return f"n = {self.n} seed{'s' if self.n != 1 else ''} per cell" + (" unless marked." if mixed else ".")


def _adapter_label(adapter: str) -> str:
    note = ADAPTER_NOTES.get(adapter)
    return f"{adapter} ({note})" if note else adapter


def markdown(rows: Sequence[Row], anchors: Sequence[Anchor] = (), walls: Sequence[Row] = (),
             notes: Sequence[str] = (), per_class: Sequence[Row] = ()) -> str:
    """results.md: per direction a table of adapters x selection rules, with ``per_class`` (one row
    per finished run: direction, adapter, acc, its final model's per-class target accuracy) a table
    of adapters x classes, the published figures, and with ``walls`` (one row per finished run,
    pretraining runs included: direction, adapter, wall_s) the compute the benchmark took.
    ``notes`` (e.g. ``augmentation_note``) follow the introduction."""
    stats = summarize(rows)
    directions = sorted({s["direction"] for s in stats})
    # The validators beyond the classic ones are graded in validators.md; other rules (none yet) stay.
    selections = sorted({s["selection"] for s in stats if s["selection"] not in VALIDATORS} | set(TABLE_SELECTIONS),
                        key=selection_rank)
    selections.remove("oracle")
    selections.append("oracle")  # unknown selections go before the oracle upper bound
    intro = ("Target test accuracy (%), mean ± sample std over seeds. Columns are model-selection rules; "
             "only `oracle` reads target labels (it picks the step best on target test accuracy) "
             "and is an upper bound, never a result.")
    lines = ["# Results", "", intro, ""]
    lines += [line for note in notes for line in (note, "")]
    for direction in directions:
        table = _Table(s for s in stats if s["direction"] == direction)
        adapters = sorted({a for a, _ in table.stats}, key=adapter_rank)
        lines += [f"## {direction}", "", table.n_note(), "",
                  "| adapter | " + " | ".join(SELECTION_HEADERS.get(s, s) for s in selections) + " |",
                  "|---" * (len(selections) + 1) + "|"]
        lines += [f"| {_cell(_adapter_label(a))} | " + " | ".join(table.cell(a, s) for s in selections) + " |"
                  for a in adapters]
        lines.append("")
    lines += _settings_section(rows)
    lines += _adapter_section(rows)
    lines += _per_class_section(per_class)
    lines += _published_section(stats, directions, anchors)
    lines += _compute_section(walls)
    return "\n".join(lines).rstrip() + "\n"


def _settings_section(rows: Sequence[Row]) -> list[str]:
    """For each adapter swept over a grid, per direction: what each rule would have picked among the
    settings, seed by seed, and the best single setting in hindsight."""
    grids: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        grids[row["direction"], row.get("family", row["adapter"])].append(row)
    grids = {key: rs for key, rs in grids.items() if len({r["adapter"] for r in rs}) > 1}
    if not grids:
        return []
    lines = ["## Settings picked without target labels", "",
             "For each adapter swept over a grid (`grid:` in the benchmark file): per seed, each rule picks "
             "the setting, and the step, with its best score, comparing its scores across the grid's runs. "
             "Target test accuracy (%) of those picks, mean ± sample std over seeds. `oracle` picks by target "
             "test accuracy and is an upper bound; so is the last row, the one setting whose last checkpoint "
             "is best on average, which only target labels reveal.", ""]
    for (direction, family), group in sorted(grids.items(), key=lambda kv: (kv[0][0], adapter_rank(kv[0][1]))):
        count = len({r["adapter"] for r in group})
        short = lambda label: label[len(family) + 1:] if label.startswith(family + "@") else label
        lines += _pick_table(f"### {direction}: {family} ({count} settings)", group, short, "setting")
    return lines


def _adapter_section(rows: Sequence[Row]) -> list[str]:
    """Per direction: which adapter (of every one but target_only) each rule would have picked, seed by seed."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        if row["adapter"] != LAST:
            groups[row["direction"]].append(row)
    groups = {d: rs for d, rs in groups.items() if len({r.get("family", r["adapter"]) for r in rs}) > 1
              and any(r.get("score") not in (None, "") for r in rs)}
    if not groups:
        return []
    lines = ["## Adapter picked without target labels", "",
             "Per seed, each rule picks among every adapter and setting of the direction (target_only aside: it "
             "trains on target labels) the run, and step, with its best score. Target test accuracy (%) of those "
             "picks, mean ± sample std over seeds: what choosing the method by a label-free score would have "
             "given. `oracle` and the last row read target labels and are upper bounds only.", ""]
    for direction, group in sorted(groups.items()):
        lines += _pick_table(f"### {direction}: every adapter", group, lambda label: label, "adapter")
    return lines


def _pick_table(title: str, group: Sequence[Row], short: Callable[[str], str], what: str) -> list[str]:
    """The rows of ``group`` each rule picks per seed (``pick_settings``), and the one ``what``
    (setting or adapter) whose last checkpoints are best on average."""
    lines = [title, "", f"| rule | target test | {what} picked, by seed |", "|---|---|---|"]
    for selection in sorted({r["selection"] for r in group} - {"last"}, key=selection_rank):
        picked = pick_settings(group, selection)
        if not picked:
            continue
        accs = [float(r["target_test_acc"]) for r in picked.values()]
        by_seed = ", ".join(f"{seed}: {_cell(short(r['adapter']))}" for seed, r in sorted(picked.items()))
        lines.append(f"| {SELECTION_HEADERS.get(selection, selection)} | {_mean_std(accs)} | {by_seed} |")
    last: dict[str, list[float]] = defaultdict(list)
    for r in group:
        if r["selection"] == "last":
            last[r["adapter"]].append(float(r["target_test_acc"]))
    if last:
        best = max(sorted(last, key=adapter_rank), key=lambda a: statistics.fmean(last[a]))
        lines.append(f"| best {what} in hindsight, last (upper bound only) | {_mean_std(last[best])} | "
                     f"{_cell(short(best))} for every seed |")
    return [*lines, ""]


def _mean_std(values: Sequence[float]) -> str:
    """Fractions as "mean ± sample std" in percent; one value alone, with no std."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return _percent(statistics.fmean(values), std, len(values))


def _percent(mean: float, std: float, n: int) -> str:
    """"mean ± std" in percent over ``n`` seeds; one seed has no spread to show, so just the figure."""
    return f"{100 * mean:.1f}" if n == 1 else f"{100 * mean:.1f} ± {100 * std:.1f}"


def augmentation_note(configs: Sequence[dict[str, Any]]) -> str | None:
    """A warning for results.md when runs trained on augmented batches (``data.augment``): their
    figures belong to another setting than the published ones, which trained without it."""
    augmented = [c["data"]["augment"] for c in configs if c["data"].get("augment")]
    if not augmented:
        return None
    settings = "; ".join(sorted({json.dumps(a, sort_keys=True) for a in augmented}))
    return (f"**Augmented training batches** in {len(augmented)} of {len(configs)} runs (`data.augment`: {settings}). "
            "Compare adapters with the source_only of the same setting; the published figures below trained "
            "without augmentation.")


def _per_class_section(per_class: Sequence[Row]) -> list[str]:
    """Per direction, adapters x classes: where each adapter's errors are."""
    if not per_class:
        return []
    groups: dict[tuple[str, str], list[list[float | None]]] = defaultdict(list)
    for row in per_class:
        groups[row["direction"], row["adapter"]].append(row["acc"])
    lines = ["## Per class", "",
             "Target test accuracy (%) of each class (its recall), of each run's final model, mean over seeds: "
             "which classes an adapter gets wrong. `target_test_confusion` in a run's summary.json says as what.", ""]
    for direction in sorted({d for d, _ in groups}):
        adapters = sorted((a for d, a in groups if d == direction), key=adapter_rank)
        classes = max(len(acc) for a in adapters for acc in groups[direction, a])
        lines += [f"### {direction}", "", "| adapter | " + " | ".join(str(c) for c in range(classes)) + " |",
                  "|---" * (classes + 1) + "|"]
        for adapter in adapters:
            cells = []
            for c in range(classes):
                values = [acc[c] for acc in groups[direction, adapter] if c < len(acc) and acc[c] is not None]
                cells.append(f"{100 * statistics.fmean(values):.1f}" if values else "-")
            lines.append(f"| {_cell(_adapter_label(adapter))} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _compute_section(walls: Sequence[Row]) -> list[str]:
    """Wall time per adapter and in all: what the benchmark costs when its runs go one after another."""
    if not walls:
        return []
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for w in walls:
        groups[w["direction"], w["adapter"]].append(float(w["wall_s"]))
    order = lambda key: (key[0], (-1, "") if key[1] == "pretrain" else adapter_rank(key[1]))
    total = sum(sum(v) for v in groups.values())
    lines = ["## Compute", "",
             "Wall time of each finished run (its `summary.json`), pretraining runs included: the benchmark's "
             "length when its runs go one after another. Runs resumed after an interruption count the time of "
             "every attempt.", "",
             "| direction | adapter | runs | wall per run (s, mean) | wall, all runs (min) |", "|---" * 5 + "|"]
    lines += [f"| {d} | {_cell(a)} | {len(v)} | {statistics.fmean(v):.0f} | {sum(v) / 60:.1f} |"
              for (d, a), v in sorted(groups.items(), key=lambda kv: order(kv[0]))]
    lines += ["", f"In all: {sum(len(v) for v in groups.values())} runs, {total / 60:.1f} min.", ""]
    return lines


def _published_section(stats: list[dict[str, Any]], directions: list[str], anchors: Sequence[Anchor]) -> list[str]:
    intro = ("Target-domain accuracy (%) published for the same methods, beside ours. Compare only within one "
             "protocol; ours is Protocol A (MNIST <-> USPS), or Protocol S on SHOT's USPS division (usps_shot). "
             "Published figures picked by an oracle are upper bounds: set them against our oracle column, not "
             "against a rule that never reads target labels.")
    lines = ["## Published figures", "", intro, ""]
    header = "| adapter | method | ours: last | ours: oracle (upper bound only) | published | protocol | source |"
    by_method: dict[str, list[Anchor]] = defaultdict(list)
    for anchor in anchors:
        by_method[anchor.method].append(anchor)
    unmatched: set[str] = set()
    for direction in directions:
        table = _Table(s for s in stats if s["direction"] == direction)
        adapters = sorted({a for a, _ in table.stats}, key=adapter_rank)
        body = []
        for adapter in adapters:
            matches = [a for a in by_method.get(adapter_method(adapter) or "", []) if a.accuracy(direction) is not None]
            if not matches:
                unmatched.add(adapter)
            for anchor in sorted(matches, key=lambda a: a.protocol):
                body.append(f"| {_cell(adapter)} | {_cell(anchor.method)} | {table.cell(adapter, 'last')} "
                            f"| {table.cell(adapter, 'oracle')} | {anchor.accuracy(direction):.1f} "
                            f"| Protocol {anchor.protocol}: {_cell(anchor.protocol_description)} "
                            f"| {_cell(anchor.source)} |")
        if not body:
            continue
        lines += [f"### {direction}", "", table.n_note(), "",
                  header, "|---" * 7 + "|", *body, ""]
    shown = {a.protocol for d in directions for a in anchors if a.accuracy(d) is not None}
    protocols = {a.protocol: a for a in anchors if a.protocol in shown}
    if protocols:
        lines += ["Protocols and how each publication selected its checkpoint:", ""]
        lines += [f"- Protocol {p}: {a.protocol_description}. Selection: {a.selection or 'not stated'}."
                  for p, a in sorted(protocols.items())]
        lines.append("")
    if unmatched:
        lines += [f"No published figure for: {', '.join(sorted(unmatched, key=adapter_rank))}.", ""]
    return lines

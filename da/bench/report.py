"""A benchmark's report: results.csv, results.md (our figures beside published ones), accuracy.png.

Every row is one (adapter, direction, seed, selection): the accuracy of the checkpoint that a
selection rule picked. "oracle" picks by target test accuracy and is an upper bound only.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from da.run_files import replace_atomically, write_text_atomic
from da.validators import VALIDATORS

COLUMNS = ("adapter", "direction", "seed", "selection", "step", "target_test_acc", "source_test_acc",
           "wall_s", "run")
SELECTIONS = ("last", *VALIDATORS, "oracle")  # as summary.json["selection"] lists them
SELECTION_HEADERS = {"oracle": "oracle (target test, upper bound only)"}
FIRST, LAST = "source_only", "target_only"
ADAPTER_NOTES = {FIRST: "no adaptation", LAST: "upper bound: trained on target labels"}

#: Our adapter names -> the method names used in the anchors file.
ADAPTER_METHODS = {"source_only": "source only", "dann": "DANN", "mmd": "DAN", "coral": "DeepCORAL",
                   "cdan": "CDAN", "mcc": "MCC", "afn": "AFN", "jan": "JAN", "target_only": "target only"}
#: Row directions -> the anchors file's keys.
DIRECTION_KEYS = {"mnist->usps": "m_to_u", "usps->mnist": "u_to_m"}

Row = Mapping[str, Any]


# ---------------------------------------------------------------- anchors (published figures)

@dataclass(frozen=True)
class Anchor:
    """A method's published figures under one protocol: the digit pair (``m_to_u``, ``u_to_m``)
    and/or other tasks by direction (``tasks``: ``{amazon->webcam: 91.4}``, Office-31 and Office-Home)."""

    protocol: str              # "A", "B", "C"
    protocol_description: str  # the protocol's one-line description
    method: str
    m_to_u: float | None
    u_to_m: float | None
    source: str
    selection: str = ""        # how the publication picked its checkpoint
    tasks: tuple[tuple[str, float], ...] = ()

    def accuracy(self, direction: str) -> float | None:
        """The published target accuracy (%) for a row direction, None for a direction it lacks."""
        key = DIRECTION_KEYS.get(direction)
        return getattr(self, key) if key is not None else dict(self.tasks).get(direction)


def load_anchors(path: Path | str) -> list[Anchor]:
    """Read the anchors YAML (protocols, each with figures) into a flat list of :class:`Anchor`."""
    data = yaml.safe_load(Path(path).read_text())
    anchors = []
    try:
        for protocol in data["protocols"]:
            for fig in protocol["figures"]:
                pair = {k: float(fig[k]) if k in fig else None for k in ("m_to_u", "u_to_m")}
                tasks = tuple((str(k), float(v)) for k, v in (fig.get("tasks") or {}).items())
                if pair["m_to_u"] is None and pair["u_to_m"] is None and not tasks:
                    raise KeyError("m_to_u, u_to_m or tasks")
                anchors.append(Anchor(protocol=str(protocol["id"]), protocol_description=protocol["description"],
                                      method=fig["method"], **pair, source=fig["source"],
                                      selection=protocol.get("selection") or "", tasks=tasks))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: malformed anchors file ({type(exc).__name__}: {exc}); expected "
                         "protocols: [{id, description, figures: [{method, m_to_u, u_to_m and/or tasks, source}]}]") from exc
    return anchors


def adapter_method(adapter: str) -> str | None:
    """The published method an adapter implements; None for unknown or composite ("cdan+mcc") ones."""
    return ADAPTER_METHODS.get(adapter)


# ---------------------------------------------------------------- rows

def _check_rows(rows: Sequence[Row]) -> None:
    seen = set()
    for row in rows:
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise ValueError(f"result row lacks {', '.join(missing)}: {dict(row)}")
        key = (row["adapter"], row["direction"], row["seed"], row["selection"])
        if key in seen:
            raise ValueError(f"two result rows for adapter, direction, seed, selection = {key}")
        seen.add(key)


def _selection_rank(selection: str) -> tuple[int, str]:
    return (SELECTIONS.index(selection), "") if selection in SELECTIONS else (len(SELECTIONS), selection)


def _adapter_rank(adapter: str) -> tuple[int, list[tuple[int, float, str]]]:
    """source_only first, target_only last, the rest by name with numbers in order of value, so
    the settings of a grid line up as ``weight=0.3``, ``weight=3``, ``weight=10``."""
    parts = [(1, float(p), "") if i % 2 else (0, 0.0, p) for i, p in enumerate(_NUMBER.split(adapter))]
    return (0 if adapter == FIRST else 2 if adapter == LAST else 1), parts


_NUMBER = re.compile(r"(\d+(?:\.\d*)?(?:e[-+]?\d+)?)")


def write_csv(path: Path | str, rows: Sequence[Row]) -> None:
    """Write results.csv atomically: the columns of :data:`COLUMNS` (extra keys after them, sorted),
    rows sorted by direction, adapter, seed and selection (selections in :data:`SELECTIONS` order)."""
    _check_rows(rows)
    extra = sorted({k for row in rows for k in row} - set(COLUMNS))
    ordered = sorted(rows, key=lambda r: (r["direction"], r["adapter"], r["seed"], _selection_rank(r["selection"])))
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
    _check_rows(rows)
    groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for row in rows:
        groups[row["direction"], row["adapter"], row["selection"]].append(float(row[metric]))
    out = []
    for (direction, adapter, selection), values in groups.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append({"direction": direction, "adapter": adapter, "selection": selection,
                    "mean": statistics.fmean(values), "std": std, "n": len(values)})
    out.sort(key=lambda s: (s["direction"], _adapter_rank(s["adapter"]), _selection_rank(s["selection"])))
    return out


# ---------------------------------------------------------------- results.md

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
        text = _percent(s["mean"], s["std"])
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
    selections = sorted({s["selection"] for s in stats} | set(SELECTIONS), key=_selection_rank)
    selections.remove("oracle")
    selections.append("oracle")  # unknown selections go before the oracle upper bound
    intro = ("Target test accuracy (%), mean ± sample std over seeds. Columns are model-selection rules; "
             "only `oracle` reads target labels (it picks the step best on target test accuracy) "
             "and is an upper bound, never a result.")
    lines = ["# Results", "", intro, ""]
    lines += [line for note in notes for line in (note, "")]
    for direction in directions:
        table = _Table(s for s in stats if s["direction"] == direction)
        adapters = sorted({a for a, _ in table.stats}, key=_adapter_rank)
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
    for (direction, family), group in sorted(grids.items(), key=lambda kv: (kv[0][0], _adapter_rank(kv[0][1]))):
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
    for selection in sorted({r["selection"] for r in group} - {"last"}, key=_selection_rank):
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
        best = max(sorted(last, key=_adapter_rank), key=lambda a: statistics.fmean(last[a]))
        lines.append(f"| best {what} in hindsight, last (upper bound only) | {_mean_std(last[best])} | "
                     f"{_cell(short(best))} for every seed |")
    return [*lines, ""]


def _mean_std(values: Sequence[float]) -> str:
    """Fractions as "mean ± sample std" in percent (std 0 for one value)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return _percent(statistics.fmean(values), std)


def _percent(mean: float, std: float) -> str:
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


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
        adapters = sorted((a for d, a in groups if d == direction), key=_adapter_rank)
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
    order = lambda key: (key[0], (-1, "") if key[1] == "pretrain" else _adapter_rank(key[1]))
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
             "protocol; ours is Protocol A. Published figures picked by an oracle are upper bounds: set them "
             "against our oracle column, not against a rule that never reads target labels.")
    lines = ["## Published figures", "", intro, ""]
    header = "| adapter | method | ours: last | ours: oracle (upper bound only) | published | protocol | source |"
    by_method: dict[str, list[Anchor]] = defaultdict(list)
    for anchor in anchors:
        by_method[anchor.method].append(anchor)
    unmatched: set[str] = set()
    for direction in directions:
        table = _Table(s for s in stats if s["direction"] == direction)
        adapters = sorted({a for a, _ in table.stats}, key=_adapter_rank)
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
        lines += [f"No published figure for: {', '.join(sorted(unmatched, key=_adapter_rank))}.", ""]
    return lines


# ---------------------------------------------------------------- accuracy.png

def accuracy_plot(rows: Sequence[Row], path: Path | str, selection: str = "last") -> None:
    """accuracy.png: one bar group per adapter, one bar per direction, error bars = std over seeds;
    dashed lines mark source_only's mean per direction. Written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stats = [s for s in summarize(rows) if s["selection"] == selection]
    if not stats:
        raise ValueError(f"no result rows with selection {selection!r} to plot")
    directions = sorted({s["direction"] for s in stats})
    adapters = sorted({s["adapter"] for s in stats}, key=_adapter_rank)
    cells = {(s["adapter"], s["direction"]): s for s in stats}
    width = 0.8 / len(directions)

    fig = Figure(figsize=(max(6.0, 1.1 * len(adapters) + 2), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, direction in enumerate(directions):
        colour = f"C{i}"
        xs = [j + (i - (len(directions) - 1) / 2) * width for j in range(len(adapters))]
        found = [cells.get((a, direction)) for a in adapters]
        means = [100 * s["mean"] if s else math.nan for s in found]
        stds = [100 * s["std"] if s else 0.0 for s in found]
        ax.bar(xs, means, width, yerr=stds, capsize=3, color=colour, label=direction)
        baseline = cells.get((FIRST, direction))
        if baseline:
            ax.axhline(100 * baseline["mean"], color=colour, linestyle="--", linewidth=1, zorder=3,
                       label=f"{FIRST} mean, {direction}")
    ax.set_xticks(range(len(adapters)), [_tick_label(a) for a in adapters], rotation=20, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("target test accuracy (%)")
    seeds = sorted({s["n"] for s in stats})
    ax.set_title(f"Target test accuracy, selection: {selection}" + (" (upper bound only)" if selection == "oracle"
                 else "") + f"\nerror bars: std over {'/'.join(map(str, seeds))} seeds")
    fig.legend(loc="outside right upper", fontsize="small")
    replace_atomically(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def _tick_label(adapter: str) -> str:
    return f"{adapter}\n(upper bound)" if adapter == LAST else adapter

"""How well each validator chooses, measured on finished runs: ``da validators PATH...`` and the
report ``da bench`` writes after every benchmark (validators.md, validators.csv, validators.png).

Per task (source -> target), every evaluated checkpoint of every run (every adapter, seed and grid
point) is a candidate. For each validator: Musgrave et al.'s weighted Spearman correlation between
its scores and the candidates' target accuracy, the plain Spearman correlation, and the target
accuracy of the candidate it picks (its best score over the whole task, as a hyperparameter search
would), beside the oracle (the best candidate) and the mean of the runs' last checkpoints. Target
labels are read here only to grade the validators, never to choose anything.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from da.errors import DAError
from da.run_files import write_text_atomic
from da.validators import VALIDATORS
from da.validators.correlation import spearman, weighted_spearman

CSV_COLUMNS = ("task", "validator", "candidates", "runs", "weighted_spearman", "spearman", "pick_acc",
               "pick_run", "pick_step", "per_run_pick_acc")


@dataclass(frozen=True)
class Candidate:
    """One evaluated checkpoint: its run, step, target figure (accuracy, or the H-score in the open
    settings) and validator scores."""

    task: str
    run: str
    step: int
    accuracy: float
    scores: dict[str, float]


def _domain_label(spec: Any) -> str:
    if isinstance(spec, list):
        return "+".join(_domain_label(s) for s in spec)
    if isinstance(spec, dict):
        return str(spec.get("name", "?"))
    return str(spec)


def find_runs(paths: Sequence[Path]) -> list[Path]:
    """Every run folder (config.yaml beside metrics.jsonl) at or under ``paths``, sorted."""
    runs: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise DAError(f"{path} does not exist; give run folders or benchmark folders")
        if (path / "metrics.jsonl").is_file() and (path / "config.yaml").is_file():
            runs.add(path)
        runs.update(p.parent for p in path.rglob("metrics.jsonl") if (p.parent / "config.yaml").is_file())
    return sorted(runs)


def read_candidates(run_dir: Path, label: str) -> list[Candidate]:
    """The scored evaluations of one run (pretraining evaluations carry no scores and are left out;
    so is a run trained on target labels, which is no unsupervised candidate)."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    data = config.get("data", {})
    adapter = config.get("adapter")
    if data.get("target_labels_per_class") or (isinstance(adapter, dict) and adapter.get("name") == "target_only"):
        return []
    task = f"{_domain_label(data.get('source', '?'))}->{_domain_label(data.get('target', '?'))}"
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if row.get("scores") and "target_test_acc" in row:
            out.append(Candidate(task, label, int(row["step"]), float(row.get("h_score", row["target_test_acc"])),
                                 {k: float(v) for k, v in row["scores"].items()}))
    return out


def gather(paths: Sequence[Path]) -> list[Candidate]:
    runs = [r.resolve() for r in find_runs(paths)]
    root = Path(*_common_parts(runs)) if runs else None
    candidates = [c for run in runs for c in read_candidates(run, str(run.relative_to(root)) if root else str(run))]
    if not candidates:
        raise DAError(f"no evaluated checkpoint with validator scores under {', '.join(map(str, paths))}; "
                      f"give folders of finished runs (da train) or benchmarks (da bench)")
    return candidates


def _common_parts(runs: Sequence[Path]) -> tuple[str, ...]:
    parts = [r.resolve().parts for r in runs]
    common = []
    for items in zip(*parts):
        if len(set(items)) != 1:
            break
        common.append(items[0])
    if len(runs) == 1:
        common = list(parts[0][:-1])
    return tuple(common) or ("/",)


def grade(candidates: Sequence[Candidate], validators: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per (task, validator): correlations and picks (see the module docstring), accuracies in %."""
    by_task: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_task[c.task].append(c)
    rows = []
    for task, group in sorted(by_task.items()):
        scored = [v for v in VALIDATORS if all(v in c.scores for c in group)]
        wanted = scored if validators is None else list(validators)
        missing = [v for v in wanted if v not in scored]
        if missing:
            raise DAError(f"validator {missing[0]!r} was not scored at every checkpoint of task {task}; rerun those runs "
                          f"with it in train.validators, or leave it out (scored everywhere: {', '.join(scored) or 'none'})")
        accs = [c.accuracy for c in group]
        runs: dict[str, list[Candidate]] = defaultdict(list)
        for c in group:
            runs[c.run].append(c)
        for v in wanted:
            scores = [c.scores[v] for c in group]
            best = max(group, key=lambda c: (_finite_or_low(c.scores[v]), c.step, c.run))
            per_run = [max(rs, key=lambda c: (_finite_or_low(c.scores[v]), c.step)).accuracy for rs in runs.values()]
            rows.append({"task": task, "validator": v, "candidates": len(group), "runs": len(runs),
                         "weighted_spearman": _round(weighted_spearman(scores, accs)), "spearman": _round(spearman(scores, accs)),
                         "pick_acc": round(100 * best.accuracy, 2), "pick_run": best.run, "pick_step": best.step,
                         "per_run_pick_acc": round(100 * statistics.fmean(per_run), 2)})
        oracle = max(group, key=lambda c: (c.accuracy, c.step, c.run))
        last = [max(rs, key=lambda c: c.step).accuracy for rs in runs.values()]
        rows.append({"task": task, "validator": "oracle", "candidates": len(group), "runs": len(runs),
                     "weighted_spearman": 1.0, "spearman": 1.0, "pick_acc": round(100 * oracle.accuracy, 2),
                     "pick_run": oracle.run, "pick_step": oracle.step,
                     "per_run_pick_acc": round(100 * statistics.fmean(max(c.accuracy for c in rs) for rs in runs.values()), 2)})
        rows.append({"task": task, "validator": "last", "candidates": len(group), "runs": len(runs),
                     "weighted_spearman": None, "spearman": None, "pick_acc": None, "pick_run": None, "pick_step": None,
                     "per_run_pick_acc": round(100 * statistics.fmean(last), 2)})
    return rows


def _finite_or_low(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 3)


def best_validators(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Per task, the validator with the highest weighted Spearman correlation (ties: the higher pick)."""
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["validator"] in ("oracle", "last") or r["weighted_spearman"] is None:
            continue
        key = (r["weighted_spearman"], r["pick_acc"])
        if r["task"] not in best or key > (best[r["task"]]["weighted_spearman"], best[r["task"]]["pick_acc"]):
            best[r["task"]] = r
    return {task: r["validator"] for task, r in best.items()}


def _fmt(x: Any) -> str:
    return "" if x is None else f"{x:.3f}" if isinstance(x, float) and abs(x) <= 1 and not isinstance(x, bool) else str(x)


def markdown_section(rows: Sequence[dict[str, Any]], level: str = "##") -> list[str]:
    """The validator tables, one per task, best validator first named."""
    best = best_validators(rows)
    lines = [f"{level} How well each validator chooses", "",
             "Per task, every evaluated checkpoint of every run is a candidate (target_only aside). Weighted Spearman: "
             "Musgrave et al.'s correlation of a validator's scores with target accuracy, weighted towards its top "
             "scores (1 = it ranks the checkpoints as target accuracy does). Pick: target accuracy (%) of the candidate "
             "with its best score over the whole task; per-run pick: mean over runs of each run's own pick; `oracle` and "
             "`last` for reference. Target labels are read only here, to grade the validators.", ""]
    for task in sorted({r["task"] for r in rows}):
        group = [r for r in rows if r["task"] == task]
        ranked = sorted((r for r in group if r["validator"] not in ("oracle", "last")),
                        key=lambda r: (-(r["weighted_spearman"] if r["weighted_spearman"] is not None else -2), r["validator"]))
        n = group[0]
        lines += [f"{level}# {task}: best validator {best.get(task, 'none')}", "",
                  f"{n['candidates']} checkpoints of {n['runs']} runs.", "",
                  "| validator | weighted Spearman | Spearman | pick | per-run pick |", "|---|---|---|---|---|"]
        for r in [*ranked, *(r for r in group if r["validator"] in ("oracle", "last"))]:
            pick = "" if r["pick_acc"] is None else f"{r['pick_acc']:.2f}"
            lines.append(f"| {r['validator']} | {_fmt(r['weighted_spearman'])} | {_fmt(r['spearman'])} | "
                         f"{pick} | {r['per_run_pick_acc']:.2f} |")
        lines.append("")
    return lines


def write_report(rows: Sequence[dict[str, Any]], out: Path) -> None:
    """validators.md, validators.csv and validators.png in ``out`` (rewritten whole each time)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r[k] is None else r[k]) for k in CSV_COLUMNS} for r in rows)
    write_text_atomic(out / "validators.csv", buf.getvalue())
    write_text_atomic(out / "validators.md", "\n".join(["# Validators", "", *markdown_section(rows)]).rstrip() + "\n")
    correlation_plot(rows, out / "validators.png")


def correlation_plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """A bar per validator and task: its weighted Spearman correlation with target accuracy."""
    # Imported here, not at the top, for start-up time: optional or heavy, needed by this path only.
    import matplotlib

    matplotlib.use("Agg")
    # Imported here, not at the top, for start-up time: optional or heavy, needed by this path only.
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    names = [v for v in VALIDATORS if any(r["validator"] == v for r in rows)]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(names) * max(1, len(tasks)) / 2), 3.6))
    width = 0.8 / max(len(tasks), 1)
    for i, task in enumerate(tasks):
        values = {r["validator"]: r["weighted_spearman"] for r in rows if r["task"] == task}
        ax.bar([j + i * width for j in range(len(names))], [values.get(v) or 0.0 for v in names], width, label=task)
    ax.set_xticks([j + width * (len(tasks) - 1) / 2 for j in range(len(names))], names, rotation=45, ha="right")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("weighted Spearman")
    ax.set_ylim(-1, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(paths: Iterable[Path], out: Path | None = None, validators: Sequence[str] | None = None,
           echo=print) -> list[dict[str, Any]]:
    """``da validators``: grade the validators on the runs under ``paths``; write the report in ``out``
    (default: the one folder given, or the folders' common parent) and print its tables."""
    paths = [Path(p) for p in paths]
    if validators:
        unknown = [v for v in validators if v not in VALIDATORS]
        if unknown:
            raise DAError(f"unknown validator {unknown[0]!r}; valid: {', '.join(VALIDATORS)} "
                          f"(oracle reads target labels and is no validator)")
    rows = grade(gather(paths), validators)
    if out is None:
        out = paths[0] if len(paths) == 1 and paths[0].is_dir() else Path(*_common_parts(paths))
    out.mkdir(parents=True, exist_ok=True)
    write_report(rows, out)
    echo("\n".join(markdown_section(rows)))
    echo(f"validator report in {out}/validators.md, validators.csv, validators.png")
    return rows

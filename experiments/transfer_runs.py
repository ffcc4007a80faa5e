"""What the transfer-learning experiments share: the command line, run folders that resume, one
source-pretrained checkpoint per seed, and the results files (results.csv, results.md, a plot).

Every run is an ordinary ``da.train.train`` run of a config built on configs/mnist_usps/base.yaml
(or another config file), in ``OUT/runs/<method>/<setting>/seed<N>``. Rerunning a script skips
finished runs, resumes cut-off ones, and refuses a folder made with another config (``--quick``
and full runs need different ``--out`` folders), with the bench worker's logic (``da.bench.worker.execute_run``).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

from da.bench.worker import execute_run
from da.composition import build_config
from da.config import deep_merge, read_yaml
from da.errors import DAError
from da.run_files import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "mnist_usps"


def parse_args(doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    parser.add_argument("--out", required=True, type=Path, help="output folder (results and run folders)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--quick", action="store_true", help="a few minutes on 2 CPU cores: short runs")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default: 2000, quick 150)")
    args = parser.parse_args()
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, e.g. 0,1,2; got {args.seeds!r}")
    args.steps = args.steps or (150 if args.quick else 2000)
    args.pretrain_steps = 300 if args.quick else read_yaml(CONFIGS / "base.yaml")["pretrain"]["steps"]
    return args


def config(file: str | Path = CONFIGS / "base.yaml", **sections: dict[str, Any]) -> dict[str, Any]:
    """A config file's contents (``inherit:`` resolved) with ``sections`` merged over it.

    The model is the plain LeNet (no bottleneck), whose blocks the fine-tuning strategies were
    designed and measured on (README "Transfer experiments"), whatever base.yaml says.
    """
    return deep_merge(deep_merge(read_yaml(Path(file)), {"model": {"bottleneck": None}}), sections)


class Runner:
    """Runs configs into ``out/runs/...`` one after another, each once; prints a line per run."""

    def __init__(self, out: Path, total: int) -> None:
        self.out, self.total, self.done = out, total, 0
        self.started = time.perf_counter()

    def run(self, key: str, raw: dict[str, Any]) -> dict[str, Any]:
        """The summary of the run ``key`` (``method/setting/seedN``) of config ``raw``, training it if needed:
        skipped when done, resumed when cut off, refused when its folder holds another config (a
        --quick run?), as ``da bench`` does with its runs (one implementation: da.bench.worker)."""
        run_dir = self.out / "runs" / key
        cfg = build_config({**raw, "name": key.replace("/", "-")})
        started = time.perf_counter()
        status = execute_run(run_dir, cfg)
        summary = json.loads((run_dir / "summary.json").read_text())
        self.done += 1
        print(f"[{self.done}/{self.total}] {key}: target_test_acc {summary['target_test_acc']:.4f} "
              f"({status}, {time.perf_counter() - started:.0f} s; {time.perf_counter() - self.started:.0f} s in all)",
              flush=True)
        return summary

    def pretrained(self, seed: int, pretrain_steps: int) -> str:
        """The source-pretrained checkpoint of ``seed`` (MNIST, base.yaml's pretraining), made once and
        shared by every method of the seed."""
        raw = config(seed=seed, adapter={"name": "source_only"}, data={"split_seed": seed},
                     pretrain={"steps": pretrain_steps}, train={"steps": 0})
        key = f"pretrain/source/seed{seed}"
        self.run(key, raw)
        return str((self.out / "runs" / key / "checkpoint.pt").resolve())


def curve(summary: dict[str, Any]) -> list[tuple[int, float]]:
    """(adaptation step, target test accuracy) at every evaluation of a run."""
    return [(row["step"], row["target_test_acc"]) for row in summary.get("history", [])]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for row in rows for k in row)), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, text.getvalue())


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def cell(values: list[float]) -> str:
    """``mean ± std`` in percent; a dash for no runs."""
    if not values:
        return "–"
    mean, std = mean_std(values)
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def table(rows: list[dict[str, Any]], row_key: str, column_key: str, row_order: list[str], column_order: list[Any],
          value: str = "target_test_acc", labels: dict[str, str] | None = None) -> str:
    """A markdown table of mean ± std over seeds: one line per ``row_key`` value, one column per ``column_key`` value."""
    groups: dict[tuple[Any, Any], list[float]] = defaultdict(list)
    for row in rows:
        groups[(row[row_key], row[column_key])].append(row[value])
    labels = labels or {}
    head = f"| {row_key} | " + " | ".join(f"{column_key}={c}" for c in column_order) + " |"
    rule = "|---|" + "---:|" * len(column_order)
    body = [f"| {labels.get(r, r)} | " + " | ".join(cell(groups.get((r, c), [])) for c in column_order) + " |"
            for r in row_order]
    return "\n".join([head, rule, *body])


def seeds_note(seeds: list[int], quick: bool, steps: int, pretrain_steps: int) -> str:
    return (f"Target test accuracy (%), mean ± std over seeds {', '.join(map(str, seeds))} "
            f"({len(seeds)} run{'s' if len(seeds) > 1 else ''} per cell; std 0.0 with one seed). "
            f"{steps} training steps per run, {pretrain_steps} source pretraining steps"
            f"{' (--quick: indicative only)' if quick else ''}.")


def save_figure(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_mean_curves(ax: Any, series: dict[str, list[list[tuple[int, float]]]], labels: dict[str, str]) -> None:
    """One line per method: mean target accuracy over seeds at each evaluated step, ± std shaded."""
    for method, runs in series.items():
        steps = sorted({s for run in runs for s, _ in run})
        by_step = defaultdict(list)
        for run in runs:
            for s, acc in run:
                by_step[s].append(acc)
        means = [mean_std(by_step[s])[0] for s in steps]
        stds = [mean_std(by_step[s])[1] for s in steps]
        ax.plot(steps, [100 * m for m in means], marker="o", markersize=3, label=labels.get(method, method))
        ax.fill_between(steps, [100 * (m - s) for m, s in zip(means, stds)],
                        [100 * (m + s) for m, s in zip(means, stds)], alpha=0.2)


def label_axes(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    """Title, axis labels, a light grid and a small legend: the look of every transfer plot."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def matplotlib_pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def main_guard(main: Callable[[], None]) -> None:
    """Run ``main``; a ``DAError`` (bad config, missing data, a foreign run folder) is one line and exit code 2."""
    try:
        main()
    except DAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)

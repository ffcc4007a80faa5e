"""``da bench``: plan a sweep, launch it, and write its results (csv, markdown, plots, t-SNE)."""
from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from da.bench.label_shift import label_shift_section
from da.bench.launch import Outcome, PerRun, launch
from da.bench.matrix_plot import matrix_plot, wants_matrix
from da.bench.online import online_section
from da.bench.plan import BenchConfig, RunSpec, plan_runs
from da.bench.validator_report import gather, grade, markdown_section, write_report
from da.bench.report import accuracy_plot, augmentation_note, load_anchors, markdown, write_csv
from da.bench.tsne import add_to_projector, subsample, tsne_plot
from da.bench.worker import DONE, status
from da.errors import DAError
from da.evaluate import load_run
from da.run_files import write_text_atomic
from da.train import batched
from da.train.label_metrics import OPEN_METRICS

#: The literature's MNIST <-> USPS figures (package data, so an installed da has them too).
ANCHORS = Path(__file__).with_name("anchors.yaml")


def run_bench(bench: BenchConfig, out: Path, launcher: str = "local", jobs: int = 1,
              address: str | None = None, echo=print, whole: BenchConfig | None = None,
              per_run: PerRun = PerRun()) -> list[dict[str, Any]]:
    """Run every missing run of ``bench`` into ``out`` and write the reports; returns the result rows.

    ``whole`` is the benchmark before ``--seeds``/``--adapters``/``--directions`` narrowed it: the
    reports cover every run of it that has finished in ``out``, not only the ones run now.
    """
    specs = plan_runs(bench, within=whole)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DAError(f"cannot create benchmark folder {out}: {exc.strerror}; pick another --out") from None
    todo = len(specs)
    counter = iter(range(1, todo + 1))
    started = time.perf_counter()

    def report(spec: RunSpec, outcome: Outcome) -> None:
        prefix = {"failed": "FAILED: ", "stopped": "stopped: "}.get(outcome.status)
        what = prefix + outcome.error if prefix else outcome.status + _headline(out / spec.key)
        echo(_run_line(next(counter), todo, spec, what))

    outcomes = launch(specs, out, launcher, jobs, address, report, per_run)
    everything = plan_runs(whole) if whole is not None and whole is not bench else specs
    rows = collect_rows(everything, out, {label: e.get("family", label) for label, e in (whole or bench).adapters.items()})
    write_reports(whole or bench, rows, everything, out)
    failed = [o for o in outcomes if o.status == "failed"]
    echo(f"benchmark {bench.name}: {len(specs) - len(failed)}/{len(specs)} runs done in "
         f"{time.perf_counter() - started:.0f} s; results in {out / 'results.md'}")
    if failed:
        raise DAError(f"{len(failed)} of {len(specs)} runs failed (first: {failed[0].key}: {failed[0].error}); "
                      f"rerun the same command to retry them")
    return rows


def list_runs(bench: BenchConfig, out: Path, echo=print, whole: BenchConfig | None = None) -> dict[str, int]:
    """``da bench --dry-run``: each run of ``bench`` and what the command would do with it (done,
    to resume, to run, or holding another config), and the counts; nothing runs, no folder is made."""
    specs = plan_runs(bench, within=whole)
    states = [status(spec, out) for spec in specs]
    for i, (spec, state) in enumerate(zip(specs, states), 1):
        echo(_run_line(i, len(specs), spec, state))
    counts = Counter(states)
    echo(f"benchmark {bench.name}: {len(specs)} runs in {out}: "
         + ", ".join(f"{counts[s]} {s}" for s in ("done", "to resume", "to run", "holds another config") if counts[s]))
    return dict(counts)


def _run_line(i: int, total: int, spec: RunSpec, what: str) -> str:
    return f"[{i:>{len(str(total))}}/{total}] {spec.direction} {spec.adapter} seed {spec.seed}: {what}"


def _headline(run_dir: Path) -> str:
    summary = _summary(run_dir)
    if not summary:
        return ""
    return f" target {summary['target_test_acc']:.3f}, {summary['wall_s']:.0f} s"


def _summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def _stream_batch(run_dir: Path) -> int | None:
    """The test-time stream's batch size (its stream.json), None for a run without a stream."""
    try:
        return int(json.loads((run_dir / "stream.json").read_text())["batch_size"])
    except (OSError, ValueError, KeyError):
        return None


def collect_rows(specs: list[RunSpec], out: Path, families: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per (adapter, direction, seed, selection rule) from the finished runs' summaries.

    ``families`` maps a grid setting's label to its entry's (``mmd@weight=3`` -> ``mmd``); a row also
    holds the rule's score at the step it picked (None for ``last``), so settings can be compared.
    """
    families = families or {}
    rows = []
    for spec in specs:
        summary = _summary(out / spec.key)
        if spec.adapter == "pretrain" or summary is None:
            continue
        for rule, pick in summary.get("selection", {}).items():
            rows.append({"adapter": spec.adapter, "direction": spec.direction, "seed": spec.seed,
                         "selection": rule, "step": pick["step"], "target_test_acc": pick["target_test_acc"],
                         "source_test_acc": pick["source_test_acc"], "wall_s": summary["wall_s"], "run": spec.key,
                         "family": families.get(spec.adapter, spec.adapter), "score": pick.get("score"),
                         "online_acc": summary.get("online_acc"),
                         "pretrain_target_test_acc": summary.get("pretrain_target_test_acc"),
                         "backbone": summary.get("backbone"), "setting": summary.get("setting"),
                         **{k: pick[k] for k in OPEN_METRICS if k in pick}})
    return rows


def write_reports(bench: BenchConfig, rows: list[dict[str, Any]], specs: list[RunSpec], out: Path) -> None:
    write_csv(out / "results.csv", rows)
    if not rows:
        return
    finished = [(spec, summary) for spec in specs
                if (summary := _summary(out / spec.key)) is not None and (out / spec.key / DONE).exists()]
    walls = [{"direction": spec.direction, "adapter": spec.adapter, "wall_s": summary["wall_s"]} for spec, summary in finished]
    per_class = [{"direction": spec.direction, "adapter": spec.adapter, "acc": summary["target_test_per_class_acc"]}
                 for spec, summary in finished if spec.adapter != "pretrain" and "target_test_per_class_acc" in summary]
    note = augmentation_note([spec.config for spec in specs if spec.adapter != "pretrain"])
    speeds = [{"adapter": spec.adapter, "images_per_s": summary["train_imgs_per_s"], "online": "online_acc" in summary,
               "batch_size": _stream_batch(out / spec.key)} for spec, summary in finished if spec.adapter != "pretrain"]
    graded = validator_rows(out)
    extra = "\n".join([*online_section(rows, speeds), *label_shift_section(rows),
                       *(markdown_section(graded) + ["See validators.md, validators.csv and validators.png."] if graded else [])])
    text = markdown(rows, load_anchors(ANCHORS), walls, [note] if note else [], per_class)
    write_text_atomic(out / "results.md", text + ("\n" + extra if extra else ""))
    accuracy_plot(rows, out / "accuracy.png")
    if wants_matrix(rows):
        matrix_plot(rows, out / "matrix.png")
    tsne_pair = _tsne_runs(bench, specs, out)
    if tsne_pair is not None:
        write_tsne(*tsne_pair, out)


def validator_rows(out: Path) -> list[dict[str, Any]]:
    """The validator report of a benchmark folder (written beside results.md), or nothing when no run
    scored a validator (test-time streams)."""
    try:
        rows = grade(gather([out]))
    except DAError:
        return []
    write_report(rows, out)
    return rows


def _tsne_runs(bench: BenchConfig, specs: list[RunSpec], out: Path) -> tuple[Path, Path] | None:
    """(pretraining run, adapted run) of the benchmark's t-SNE adapter and seed, when both finished."""
    adapter = bench.tsne.get("adapter") or next((a for a in bench.adapters if a not in ("source_only", "target_only")), None)
    seed = bench.tsne.get("seed", bench.seeds[0] if bench.seeds else 0)
    for spec in specs:
        if spec.adapter == adapter and spec.seed == seed and spec.after:
            before, after = out / spec.after, out / spec.key
            if (before / "checkpoint.pt").exists() and (after / "summary.json").exists():
                return before, after
    return None


def write_tsne(before_run: Path, after_run: Path, out: Path, per_domain: int = 1000) -> None:
    """Source and target test features before adaptation (the pretrained model) and after it."""
    features, labels = {}, {}
    for when, run_dir in (("before", before_run), ("after", after_run)):
        model, domains, _ = load_run(run_dir)
        with model.eval_mode():
            features[when] = {
                d: batched(lambda x, d=d: model.embed(x, d), split.x[:per_domain]).cpu()
                for d, split in (("source", domains.source_test), ("target", domains.target_test))}
        labels = {"source": domains.source_test.y[:per_domain].cpu(), "target": domains.target_test.y[:per_domain].cpu()}
    tsne_plot(features["before"], features["after"], out / "tsne.png", labels=labels, per_domain=per_domain)
    folder = out / "projector" / direction_folder_of(after_run, out)
    # Written by the bench alone, and whole each time: clearing it keeps TensorBoard from warning that
    # the embedding folders exist, and from listing a rerun's points beside the last run's.
    shutil.rmtree(folder, ignore_errors=True)
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for step, when in enumerate(("before", "after")):
            add_to_projector(writer, *subsample(features[when], labels, per_domain), tag=f"features_{when}", step=step)
    finally:
        writer.close()


def direction_folder_of(run_dir: Path, out: Path) -> str:
    return str(run_dir.relative_to(out)).replace("/", "_")

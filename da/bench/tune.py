"""``da tune``: a hyperparameter search on Optuna (Akiba et al. 2019) whose objective is a validator,
never target accuracy.

Each trial is a normal run folder (``trials/NNNN``). The trials share one source pretraining run
(``pretrain/``) when the config pretrains. The study lives in ``study.db`` (SQLite): a killed search
resumes where it stopped, its cut-off trial drawn and run again. The sampler is reseeded from the
search's seed and the trial's place in it before each draw (``reseeded_sampler.py``), so the same
seed gives the same trials, killed or not. ``--launcher ray`` runs the trials on Ray Tune
(``tune_ray.py``) with the same sampler and study. A trial's objective is its best score of the
validator over its evaluations (the checkpoint that validator picks); the pruner (median, after 5
trials) compares the scores reported at each evaluation. The search ends with ``best.yaml`` (the
chosen trial's config, to rerun with ``da train -c``) and ``trials.md`` / ``trials.csv``.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

import yaml

from da.bench.reseeded_sampler import STARTUP, ReseededSampler, finished_count
from da.bench.search_space_of import apply, search_space
from da.bench.trial import PRUNED, STUDY, show_values, trial_config, trial_folder
from da.bench.worker import DONE, execute_run
from da.composition import build_config, load_config
from da.composition.driver import train
from da.config import Config, dump_yaml, to_dict
from da.config.search_space import Param
from da.errors import DAError
from da.run_files import write_text_atomic
from da.validators import VALIDATORS, resolve

class _Pruned(Exception):
    pass


def check_objective(objective: str) -> None:
    if objective not in VALIDATORS:
        why = ("reads target labels; the objective must be a validator" if objective in ("oracle", "target_test_acc", "h_score")
               else f"is no validator; give one of {', '.join(VALIDATORS)}")
        raise DAError(f"--objective {objective} {why} (da validators says which chooses best on a task)")


def fingerprint(config: Config, space: dict[str, Param], objective: str, sampler: str, seed: int) -> str:
    what = {"config": to_dict(config), "space": {k: p.describe() for k, p in space.items()},
            "objective": objective, "sampler": sampler, "seed": seed}
    return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:12]


def open_study(out: Path, print_: str, sampler: str, seed: int, pruner: str) -> Any:
    """The search's study in ``out/study.db``: created, or resumed when it is this search's."""
    # Imported here, not at the top, for start-up time: optional or heavy, needed by this path only.
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = out / "study.db"
    if out.exists() and not db.exists() and any(out.iterdir()):
        raise DAError(f"{out} exists and holds no search (no study.db); choose another --out (nothing is overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    fresh = not db.exists()
    storage = f"sqlite:///{db}"
    try:
        study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize", load_if_exists=True,
                                    sampler=ReseededSampler(sampler, seed),
                                    pruner=optuna.pruners.MedianPruner(n_startup_trials=STARTUP) if pruner == "median"
                                    else optuna.pruners.NopPruner())
    except Exception as exc:  # not an SQLite file, or a study of another tool
        raise DAError(f"{db} is not a da tune study ({type(exc).__name__}); choose another --out") from None
    if fresh:
        study.set_user_attr("fingerprint", print_)
    elif study.user_attrs.get("fingerprint") != print_:
        raise DAError(f"{db} holds another search (another config, space, objective, sampler or seed); "
                      f"choose another --out, or rerun the command that started it")
    return study


def shared_pretraining(config: Config, out: Path, echo: Callable[[str], None]) -> Config:
    """Every trial loads one source pretraining (``out/pretrain``), run first, when the config pretrains."""
    if config.pretrain.steps <= 0 or config.pretrain.checkpoint:
        return config
    raw = to_dict(config)
    raw.update(name="pretrain", adapter={"name": "source_only"}, stages=None)
    raw["train"]["steps"] = 0
    raw.pop("stages")
    state = execute_run(out / "pretrain", build_config(raw))
    echo(f"pretraining: {state} ({out / 'pretrain'})")
    raw = to_dict(config)
    raw["pretrain"]["checkpoint"] = str(out / "pretrain" / "checkpoint.pt")
    return build_config(raw)


def tune(config_path: str, sets: list[str], trials: int, objective: str, out: Path, space_flags: list[str],
         sampler: str = "tpe", seed: int = 0, pruner: str = "median", echo: Callable[[str], None] = print,
         launcher: str = "local", jobs: int = 1, address: str | None = None) -> dict[str, Any]:
    """Run (or resume) the search; return the best trial's row. ``launcher="ray"``: the trials on Ray
    Tune (``jobs`` at once), drawn by the same seeded Optuna sampler into the same study."""
    # Imported here, not at the top, for start-up time: optional or heavy, needed by this path only.
    import optuna

    check_objective(objective)
    if trials < 1:
        raise DAError(f"--trials must be at least 1, got {trials}")
    if jobs < 1:
        raise DAError(f"--jobs must be at least 1, got {jobs}")
    config = load_config(config_path, sets)
    scored = resolve(config.train.validators)
    if objective not in scored:  # the objective is scored at every evaluation of every trial
        raw = to_dict(config)
        raw["train"]["validators"] = [*scored, objective]
        config = build_config(raw)
    space = search_space(config, space_flags)
    study = open_study(out, fingerprint(config, space, objective, sampler, seed), sampler, seed, pruner)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)  # cut off by a kill
    echo(f"search of {trials} trials on {', '.join(f'{k} ({p.describe()})' for k, p in space.items())}; "
         f"objective {objective}; study {out / 'study.db'}")
    base = to_dict(shared_pretraining(config, out, echo))
    if launcher == "ray":
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Ray Tune's tables off: one line per trial, as here
        try:
            from da.bench.tune_ray import run_trials_on_ray  # here: Ray Tune is optional (the ray extra) and heavy
        except ImportError as exc:
            raise DAError(f"--launcher ray needs Ray Tune ({exc.name} is missing): pip install 'da[ray]'") from None

        run_trials_on_ray(study, space, base, objective, out, trials, ReseededSampler(sampler, seed), pruner, jobs, address, echo)
    else:
        run_trials_here(study, space, base, objective, out, trials, echo)
    return write_results(study, out, objective, to_dict(config), echo)


def run_trials_here(study: Any, space: dict[str, Param], base: dict[str, Any], objective: str, out: Path,
                    trials: int, echo: Callable[[str], None]) -> None:
    """The trials one after another in this process, until ``trials`` are complete or pruned."""
    # Imported here, not at the top, for start-up time: optional or heavy, needed by this path only.
    import optuna

    while (finished := finished_count(study)) < trials:
        trial = study.ask()
        values = {key: param.suggest(trial, key) for key, param in space.items()}
        trial.set_user_attr("run", trial_folder(trial.number))
        run_dir = out / trial_folder(trial.number)
        run_dir.mkdir(parents=True)

        def report(step: int, scores: dict[str, float], trial=trial) -> None:
            value = scores[objective]
            trial.report(value if math.isfinite(value) else -math.inf, step)
            if trial.should_prune():
                raise _Pruned()

        try:
            summary = train(trial_config(base, values, trial.number), run_dir, show_progress=False, on_evaluation=report)
        except _Pruned:
            (run_dir / PRUNED).write_text("")
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            echo(f"[{finished + 1}/{trials}] trial {trial.number}: pruned {show_values(values)}")
            continue
        (run_dir / DONE).write_text("")
        value = summary["selection"][objective]["score"]
        study.tell(trial, value if value is not None and math.isfinite(value) else -math.inf)
        echo(f"[{finished + 1}/{trials}] trial {trial.number}: {objective} {value:.4f} {show_values(values)}")


def report_on(out: Path, directions: list[str], seeds: list[int], jobs: int, echo: Callable[[str], None],
              sets: list[str] | None = None) -> Path:
    """The nested protocol's second half: ``best.yaml`` run on other tasks (a benchmark in
    ``out/report``), so that no figure reported there chose its own settings. ``sets``
    (``KEY=VALUE``) change what the search kept short, e.g. ``train.steps=3600``."""
    # Imported here, not at the top, for start-up time: optional or heavy, needed by this path only.
    from da.bench.plan import load_bench_config
    from da.bench.run import run_bench

    bench_file = out / "report.yaml"
    text = (f"# da tune: best.yaml, chosen by the search in this folder, on other tasks\n"
            f"seeds: {json.dumps(seeds)}\ndirections: {json.dumps(directions)}\nadapters:\n  tuned: best.yaml\n")
    overrides = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise DAError(f"--report-set {item!r} must look like KEY=VALUE, e.g. --report-set train.steps=3600")
        overrides[key.strip()] = yaml.safe_load(value)
    if overrides:
        text += f"set: {json.dumps(overrides)}\n"
    write_text_atomic(bench_file, text)
    bench = load_bench_config(bench_file)
    run_bench(bench, out / "report", jobs=jobs, echo=echo)
    return out / "report" / "results.md"


def trial_rows(study: Any, out: Path) -> list[dict[str, Any]]:
    """One row per trial: number, state, objective, params, and (read here only, never chosen on)
    the target test accuracy of its run's checkpoint the objective picked."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        run = t.user_attrs.get("run", "")
        summary_path = out / run / "summary.json"
        acc = None
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            picked = summary.get("selection", {}).get(study.user_attrs.get("objective", ""), {})
            acc = picked.get("target_test_acc")
        state = "pruned" if run and (out / run / PRUNED).exists() else t.state.name.lower().replace("fail", "killed")
        rows.append({"trial": t.number, "state": state, "objective": t.value,
                     "run": run, "target_test_acc": acc, **t.params})
    return rows


def write_results(study: Any, out: Path, objective: str, original: dict[str, Any],
                  echo: Callable[[str], None]) -> dict[str, Any]:
    """best.yaml (the searched config with the best complete trial's values: it pretrains as the
    original did, so it reruns anywhere and on other tasks), trials.csv and trials.md."""
    study.set_user_attr("objective", objective)
    rows = trial_rows(study, out)
    complete = [r for r in rows if r["state"] == "complete"]
    if not complete:
        raise DAError(f"no trial of {out} completed (all pruned or cut off); run more --trials")
    best = max(complete, key=lambda r: (r["objective"], -r["trial"]))
    values = {k: v for k, v in best.items() if k not in ("trial", "state", "objective", "run", "target_test_acc")}
    config_text = dump_yaml(apply(original, values))
    write_text_atomic(out / "best.yaml", f"# da tune: trial {best['trial']}, {objective} {best['objective']:.4f} "
                                         f"(chosen without target labels); rerun with da train -c best.yaml\n" + config_text)
    params = sorted({k for r in rows for k in r} - {"trial", "state", "objective", "run", "target_test_acc"})
    columns = ["trial", "state", "objective", *params, "target_test_acc", "run"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "trials.csv", buf.getvalue())
    lines = [f"# Trials: objective {objective}", "",
             f"Best (by {objective}, no target label read): trial {best['trial']}, `best.yaml`. The target test accuracy "
             "column is read after the search, to show what the choice was worth; it chose nothing.", "",
             "| " + " | ".join(columns[:-1]) + " |", "|---" * (len(columns) - 1) + "|"]
    for r in rows:
        cells = [_cell(r.get(c)) for c in columns[:-1]]
        lines.append("| " + " | ".join(cells) + " |")
    write_text_atomic(out / "trials.md", "\n".join(lines) + "\n")
    echo(f"best trial {best['trial']}: {objective} {best['objective']:.4f}; {out / 'best.yaml'}, trials.md, trials.csv")
    return best


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)

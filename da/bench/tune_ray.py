"""``da tune --launcher ray``: the search's trials on Ray Tune (Liaw et al., "Tune", 2018), several at
once, drawn by the same seeded Optuna sampler through Ray's ``OptunaSearch`` into the same
``study.db``, so ``trials.md``, ``best.yaml`` and resuming work as with the local launcher.

Pruning is Ray's ``MedianStoppingRule`` (Golovin et al., "Google Vizier", 2017): a trial whose best
objective so far is below the median of the others at the same evaluation stops. Optuna records
such a trial as complete with its score so far; its folder is marked ``pruned`` and it never
becomes ``best.yaml``. With ``--jobs 1`` a seed gives the same trials as the local launcher's
sampler would in one session; with more, the draws depend on which trial finishes first.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable

from ray import tune as ray_tune
from ray.tune.schedulers import FIFOScheduler, MedianStoppingRule, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from da.bench.launch import start_ray
from da.bench.reseeded_sampler import STARTUP, finished_count
from da.bench.trial import PRUNED, STUDY, show_values, trial_config, trial_folder
from da.bench.worker import DONE
from da.config.search_space import Param
from da.errors import DAError

TRIAL = "_trial"  # the Optuna trial number, passed to the trainable beside the drawn values


def ray_trial(params: dict[str, Any], *, base: dict[str, Any], keys: list[str], objective: str, out: str,
              threads: int, env: dict[str, str], cwd: str) -> None:
    """One trial in a Ray worker: a normal run folder ``trials/NNNN``, reporting to Tune the best
    objective so far at each evaluation."""
    # Imported here, not at the top: they run in the Ray worker, and ray.tune is heavy to import.
    import torch

    from da.composition.driver import train

    os.environ.update(env)
    os.chdir(cwd)  # a config's relative paths read as they do under the local launcher
    torch.set_num_threads(threads)
    number = int(params[TRIAL])
    run_dir = Path(out) / trial_folder(number)
    run_dir.mkdir(parents=True)
    best = -math.inf

    def report(step: int, scores: dict[str, float]) -> None:
        nonlocal best
        value = scores[objective]
        best = max(best, value if math.isfinite(value) else -math.inf)
        ray_tune.report({"objective": best, "step": step})

    train(trial_config(base, {k: params[k] for k in keys}, number), run_dir, show_progress=False, on_evaluation=report)
    (run_dir / DONE).write_text("")


class DrawTrial:
    """Ray's define-by-run space: draws a trial's values in the Optuna study, names its run folder,
    and passes its number on (a class, not a closure: Ray pickles the search to checkpoint it)."""

    def __init__(self, space: dict[str, Param]) -> None:
        self.space = space

    def __call__(self, trial: Any) -> dict[str, Any]:
        for key, param in self.space.items():
            param.suggest(trial, key)
        trial.set_user_attr("run", trial_folder(trial.number))
        return {TRIAL: trial.number}


def run_trials_on_ray(study: Any, space: dict[str, Param], base: dict[str, Any], objective: str, out: Path,
                      trials: int, sampler: Any, pruner: str, jobs: int, address: str | None,
                      echo: Callable[[str], None]) -> None:
    """Run trials on Ray Tune, ``jobs`` at once, until ``trials`` are complete or pruned."""
    start = finished_count(study)
    if start >= trials:
        return
    ray = start_ray(os.cpu_count() or 1, address)
    threads = max(1, int(ray.cluster_resources().get("CPU", 1)) // jobs)
    out = out.resolve()
    trainable = ray_tune.with_resources(ray_tune.with_parameters(
        ray_trial, base=base, keys=list(space), objective=objective, out=str(out), threads=threads, cwd=os.getcwd(),
        env={k: v for k, v in os.environ.items() if k.startswith("DA_")}), {"cpu": threads})
    scheduler = (MedianStop(time_attr="training_iteration", grace_period=1, min_samples_required=STARTUP)
                 if pruner == "median" else FIFOScheduler())
    search = OptunaSearch(DrawTrial(space), metric="objective", mode="max", sampler=sampler, study_name=STUDY,
                          storage=study._storage)
    tuner = ray_tune.Tuner(
        trainable,
        tune_config=ray_tune.TuneConfig(search_alg=search, scheduler=scheduler, num_samples=trials - start,
                                        max_concurrent_trials=jobs, metric="objective", mode="max"),
        run_config=ray_tune.RunConfig(storage_path=str(out / "ray"), name=f"from-trial-{start:04d}", verbose=0,
                                      callbacks=[_Echo(out, objective, trials, start, echo)],
                                      failure_config=ray_tune.FailureConfig(fail_fast=True)))
    grid = tuner.fit()
    if grid.errors:
        raise DAError(f"a trial of {out} failed on Ray: {str(grid.errors[0]).strip().splitlines()[-1]}; "
                      "rerun the command to resume the search once it is fixed")


class MedianStop(MedianStoppingRule):
    """Ray's median stopping rule, which never pauses a trial to let others catch up while too few
    have finished (Ray's default): a trial has no checkpoint Tune could resume, so it would start over."""

    def _on_insufficient_samples(self, tune_controller: Any, trial: Any, time: float) -> str:
        return TrialScheduler.CONTINUE


class _Echo(ray_tune.Callback):
    """A Ray Tune callback: one line per finished trial, and the ``pruned`` mark on the folder of a
    trial the scheduler stopped."""

    def __init__(self, out: Path, objective: str, trials: int, start: int, echo: Callable[[str], None]):
        self.out, self.objective, self.trials, self.done, self.echo = out, objective, trials, start, echo

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        run_dir = self.out / trial_folder(int(trial.config[TRIAL]))
        values = {k: v for k, v in trial.config.items() if k != TRIAL}
        if not (run_dir / DONE).exists():
            (run_dir / PRUNED).write_text("")
            self.echo(f"[{self.done}/{self.trials}] trial {trial.config[TRIAL]}: pruned {show_values(values)}")
            return
        value = (trial.last_result or {}).get("objective", float("nan"))
        self.echo(f"[{self.done}/{self.trials}] trial {trial.config[TRIAL]}: {self.objective} {value:.4f} "
                  f"{show_values(values)}")

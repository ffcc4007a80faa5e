"""An Optuna sampler reseeded before each draw from a search's seed and the trial's place in it, so
that the same seed gives the same trials whether the search ran in one session, was killed and
resumed, or ran on Ray one trial at a time."""
from __future__ import annotations

from typing import Any

import optuna

STARTUP = 5  # trials before TPE's model (or the median pruner) acts: random draws until then


def finished_count(study: optuna.Study) -> int:
    """Trials that count towards --trials: complete or pruned (a trial cut off by a kill does not)."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


class ReseededSampler(optuna.samplers.BaseSampler):
    """Seeded TPE (``kind="tpe"``, Bergstra et al. 2011) or random search, reseeded per trial."""

    def __init__(self, kind: str, seed: int) -> None:
        self.kind, self.seed = kind, seed
        self.inner = self._seeded(0)

    def _seeded(self, offset: int) -> optuna.samplers.BaseSampler:
        if self.kind == "random":
            return optuna.samplers.RandomSampler(seed=self.seed + offset)
        return optuna.samplers.TPESampler(seed=self.seed + offset, n_startup_trials=STARTUP)

    def before_trial(self, study: optuna.Study, trial: Any) -> None:
        # The trial's place among those that were not cut off: the search's k-th trial draws with
        # seed + k, whether earlier ones finished, were killed, or (on Ray) still run.
        killed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
        self.inner = self._seeded(trial.number - sum(t.number < trial.number for t in killed))
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: Any) -> Any:
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: Any, search_space: Any) -> Any:
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: Any, name: str, distribution: Any) -> Any:
        return self.inner.sample_independent(study, trial, name, distribution)

    def after_trial(self, study: optuna.Study, trial: Any, state: Any, values: Any) -> None:
        self.inner.after_trial(study, trial, state, values)

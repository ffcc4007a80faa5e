"""Every validator by name: its score function, what it needs beyond the target probe's outputs,
and what it costs. A run scores the validators of ``train.validators`` at every evaluation."""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from da.errors import DAError

from da.validators import feature_scores as features
from da.validators import prediction_scores as predictions
from da.validators import side_model_scores as side
from da.validators.inputs import ScoringInputs


@dataclass(frozen=True)
class Validator:
    """A label-free score of one evaluation (higher is better) and what the evaluation must gather for it."""

    name: str
    score: Callable[[ScoringInputs], float]
    needs: frozenset[str] = frozenset()  # of da.validators.inputs.NEEDS
    side_model: bool = False  # fits a model of its own at each evaluation (seconds, not milliseconds)


_ALL = (
    Validator("source_val", predictions.source_val),
    Validator("im", predictions.information_maximization),
    Validator("snd", predictions.soft_neighborhood_density),
    Validator("entropy", predictions.negative_entropy),
    Validator("bnm", predictions.batch_nuclear_norm),
    Validator("diversity", predictions.diversity),
    Validator("nearest_source", predictions.nearest_source),
    Validator("class_ami", features.class_ami),
    Validator("knn", features.domain_knn, frozenset({"source_features"})),
    Validator("target_knn", features.target_knn, frozenset({"source_features"})),
    Validator("mmd", features.negative_mmd, frozenset({"source_features"})),
    Validator("dev", side.deep_embedded_validation, frozenset({"source_features"}), side_model=True),
    Validator("mixval", side.mixval_inter, frozenset({"target_images"})),
    Validator("mixval_intra", side.mixval_intra, frozenset({"target_images"})),
)
CATALOG: dict[str, Validator] = {v.name: v for v in _ALL}
VALIDATORS: tuple[str, ...] = tuple(CATALOG)
#: ``train.validators: default``: every validator; about 2 s an evaluation on 2 CPU cores at the digits' sizes
#: (docs/validators.md). ``all`` stays a name of its own for when a costlier validator joins.
DEFAULT: tuple[str, ...] = VALIDATORS
#: The validators every run scored before the catalogue grew: results tables keep these columns.
CLASSIC: tuple[str, ...] = ("source_val", "im", "snd", "entropy", "bnm")


def resolve(spec: str | Sequence[str], key: str = "train.validators") -> tuple[str, ...]:
    """The validator names of ``train.validators`` (``default``, ``all`` or a list), checked."""
    if isinstance(spec, str):
        if spec in ("default", "all"):
            return DEFAULT if spec == "default" else VALIDATORS
        spec = [spec]
    unknown = [name for name in spec if name not in CATALOG]
    if unknown:
        near = difflib.get_close_matches(str(unknown[0]), VALIDATORS, n=1)
        hint = f"did you mean {near[0]}? " if near else ""
        raise DAError(f"config key {key}: unknown validator {unknown[0]!r}; {hint}valid: default, all, {', '.join(VALIDATORS)}")
    if not spec:
        raise DAError(f"config key {key} is empty; list at least one validator, or give default")
    return tuple(dict.fromkeys(spec))


def needs(names: Iterable[str]) -> set[str]:
    """What an evaluation must gather for the validators ``names``."""
    return {need for name in names for need in CATALOG[name].needs}


def score(inputs: ScoringInputs, names: Iterable[str] = VALIDATORS) -> dict[str, float]:
    """Each validator of ``names``' score for one evaluation (NaN where it cannot be computed, e.g.
    MixVal with no pair of differing pseudo-labels)."""
    out = {}
    for name in names:
        try:
            out[name] = float(CATALOG[name].score(inputs))
        except (ValueError, ZeroDivisionError, FloatingPointError):  # a degenerate evaluation (one class, ...)
            out[name] = math.nan
    return out

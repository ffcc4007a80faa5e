"""Every validator by name: its score function, what it needs beyond the target probe's outputs,
and what it costs. A run scores the validators of ``train.validators`` at every evaluation."""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from da.errors import DAError
from da.validators.feature_scores import class_ami, domain_knn, negative_mmd, target_knn
from da.validators.prediction_scores import (batch_nuclear_norm, diversity, information_maximization, nearest_source,
                                             negative_entropy, soft_neighborhood_density, source_val)
from da.validators.side_model_scores import deep_embedded_validation, mixval_inter, mixval_intra
from da.validators.inputs import ScoringInputs


@dataclass(frozen=True)
class Validator:
    """A label-free score of one evaluation (higher is better) and what the evaluation must gather for it."""

    name: str
    score: Callable[[ScoringInputs], float]
    needs: frozenset[str] = frozenset()  # of da.validators.inputs.NEEDS


_ALL = (
    Validator("source_val", source_val),
    Validator("im", information_maximization),
    Validator("snd", soft_neighborhood_density),
    Validator("entropy", negative_entropy),
    Validator("bnm", batch_nuclear_norm),
    Validator("diversity", diversity),
    Validator("nearest_source", nearest_source),
    Validator("class_ami", class_ami),
    Validator("knn", domain_knn, frozenset({"source_features"})),
    Validator("target_knn", target_knn, frozenset({"source_features"})),
    Validator("mmd", negative_mmd, frozenset({"source_features"})),
    Validator("dev", deep_embedded_validation, frozenset({"source_features"})),
    Validator("mixval", mixval_inter, frozenset({"target_images"})),
    Validator("mixval_intra", mixval_intra, frozenset({"target_images"})),
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

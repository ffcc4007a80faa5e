"""The evaluation a selection rule picks from a run's history."""
from __future__ import annotations

import math
from typing import Any

from da.errors import DAError
from da.validators.catalog import VALIDATORS

# Not validators: "oracle" reads target test labels (a labelled upper bound only), "last" is no selection.
PICKS: tuple[str, ...] = (*VALIDATORS, "oracle", "last")


def pick(history: list[dict[str, Any]], validator: str) -> dict[str, Any]:
    """The evaluation row that ``validator`` selects, as ``{"step", "target_test_acc", "score"}``.

    ``history`` rows look like ``{"step": int, "target_test_acc": float, "scores": {name: float}}``.
    A validator picks its highest score (ties: the later step; a NaN score is never preferred).
    ``"oracle"`` picks the best ``target_test_acc``, a labelled upper bound that is no model
    selection (the best ``h_score`` in the open-set and universal settings); ``"last"`` is the last
    row. ``score`` is the validator's score, the target test accuracy for ``"oracle"``, and None for
    ``"last"``.
    """
    if validator not in PICKS:
        raise DAError(f"unknown validator {validator!r}; valid names: {', '.join(PICKS)}")
    if not history:
        raise DAError(f"no evaluation to pick from with validator {validator!r}: the run has no evaluated step")
    if validator not in ("last", "oracle") and any(validator not in row["scores"] for row in history):
        raise DAError(f"validator {validator!r} was not scored at every evaluation of this run; add it to "
                      f"train.validators (or give all) and rerun, or pick by one the run scored")
    if validator == "last":
        row, value = history[-1], None
    else:
        def value_of(row: dict[str, Any]) -> float:
            if validator == "oracle":  # the open settings' figure is the H-score (da.train.label_metrics)
                return row.get("h_score", row["target_test_acc"])
            return row["scores"][validator]

        def rank(row: dict[str, Any]) -> tuple[float, int]:
            value = value_of(row)
            return (-math.inf if math.isnan(value) else value), row["step"]

        row = max(history, key=rank)
        value = value_of(row)
    return {"step": row["step"], "target_test_acc": row["target_test_acc"], "score": value}

"""Evaluations during a run, and the checkpoint each selection rule picks among them.

Every evaluation logs the accuracies and the label-free validators' scores (``da.validators``) and
keeps them in the run's history; early stopping restores the best evaluation by a validator; the
summary lists what each rule (last, each validator, the oracle upper bound) would pick.
"""
from __future__ import annotations

import math
from typing import Any

from da.checkpoint import load_checkpoint
from da.errors import DAError
from da.run_files import replace_atomically
from da.train.label_metrics import OPEN_METRICS
from da.train.run import Run, StageContext
from da.validators import VALIDATORS, pick, resolve

ACCURACIES = ("source_val_acc", "source_test_acc", "target_test_acc")


def record_evaluation(run: "Run", stage: str, step: int, global_step: int) -> None:
    """Accuracies and validator scores at ``step``: logged, and kept in the history selection reads."""
    m = run.model
    accs, scores = m.evaluate_and_score(run.domains, validators=resolve(run.config.train.validators))
    run.log.scalars({f"acc/{k.removesuffix('_acc')}": v for k, v in accs.items()}, global_step)
    run.log.scalars({f"validator/{k}": v for k, v in scores.items()}, global_step)
    run.log.metrics_row({"stage": stage, "step": step, **accs, "scores": scores})
    run.log.progress(0, tgt_test=accs["target_test_acc"], src_val=accs["source_val_acc"])
    run.evaluations.add(step, accs, scores)
    if run.on_evaluation is not None:
        run.on_evaluation(global_step, scores)


def best_evaluation(history: list[dict[str, Any]], validator: str) -> tuple[dict[str, Any], int]:
    """Early stopping's best row by ``validator`` and the evaluations made since it.

    A later evaluation must beat the best score to replace it (ties keep the earlier step; a NaN
    score never wins), so a plateau runs out the patience.
    """
    best, since = history[0], 0
    for row in history[1:]:
        score, top = row["scores"][validator], best["scores"][validator]
        if not math.isnan(score) and (math.isnan(top) or score > top):
            best, since = row, 0
        else:
            since += 1
    return best, since


def track_best(ctx: "StageContext", step: int) -> bool:
    """After the evaluation at ``step``: save ``best.pt`` if it is the best so far; True to stop."""
    run = ctx.run
    rule = run.config.train.early_stopping
    best, since = best_evaluation(run.evaluations.history, rule.validator)
    if best["step"] == step:
        run.save(ctx, step, run.best_path)
    return since >= rule.patience


def restore_best(run: "Run") -> None:
    """Early stopping's end: the model, ``checkpoint.pt`` and the summary's accuracies become those of
    the best evaluation (``best.pt``); the history keeps every evaluation."""
    rule = run.config.train.early_stopping
    best, _ = best_evaluation(run.evaluations.history, rule.validator)
    state = load_checkpoint(run.best_path, run.device)
    if state["step"] != best["step"]:
        raise DAError(f"{run.best_path} holds step {state['step']} but the best evaluation by {rule.validator} is at "
                      f"step {best['step']}; rerun from scratch")
    run.model.load_state_dict(state["model"])  # the slots already have their shape: load the weights as they are
    replace_atomically(run.checkpoint_path, lambda tmp: tmp.write_bytes(run.best_path.read_bytes()))
    run.evaluations.accuracies = {k: best[k] for k in (*ACCURACIES, *OPEN_METRICS) if k in best}
    run.early_stopping.restored = {
        "validator": rule.validator, "patience": rule.patience, "restored_step": best["step"],
        "score": best["scores"][rule.validator], "stopped_early_at": run.early_stopping.stopped_at,
    }


def selections(history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per selection rule (last, each validator, oracle): the evaluated step it picks and its accuracies."""
    if not history:
        return {}
    by_step = {row["step"]: row for row in history}
    # A run begun before a validator was added (and resumed since) lacks its early scores: no pick.
    scored = [v for v in VALIDATORS if all(v in row["scores"] for row in history)]
    out = {}
    for rule in ("last", *scored, "oracle"):
        chosen = pick(history, rule)
        row = by_step[chosen["step"]]
        out[rule] = {"step": row["step"], "target_test_acc": row["target_test_acc"],
                     "source_test_acc": row["source_test_acc"], "score": chosen.get("score"),
                     **{k: row[k] for k in OPEN_METRICS if k in row}}
    return out

"""Unsupervised model selection: score an evaluation step without target labels, then pick a step.

The scores come from pytorch-adapt's validators. Musgrave et al. 2022 ("Benchmarking validation
methods for unsupervised domain adaptation", arXiv 2208.07360) find that these often correlate
poorly with target accuracy, so a pick is a reported choice, not a guarantee.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from da.errors import DAError

VALIDATORS: tuple[str, ...] = ("source_val", "im", "snd", "entropy", "bnm")
# Not validators: "oracle" reads target test labels (a labelled upper bound only), "last" is no selection.
PICKS: tuple[str, ...] = (*VALIDATORS, "oracle", "last")


def score(source_val_logits: Tensor, source_val_labels: Tensor,
          target_logits: Tensor, target_features: Tensor) -> dict[str, float]:
    """Every validator's score for one evaluation; higher is better for all of them.

    - ``source_val``: accuracy on the labelled source validation split.
    - ``im``: information maximization (Shi & Sha 2012, "Information-theoretical learning of
      discriminative clusters for unsupervised domain adaptation"; as a validator, Musgrave et
      al. 2022): H(mean prediction) - mean H(prediction), pytorch-adapt ``IMValidator``.
    - ``snd``: soft neighborhood density (Saito et al., "Tune it the right way: unsupervised
      validation of domain adaptation via soft neighborhood density", ICCV 2021): mean entropy
      of each target sample's softmax over its cosine similarities (temperature 0.05) to the
      other target samples, pytorch-adapt ``SNDValidator``. Predictions that are all alike
      (collapsed onto one class, or all near uniform) score highest: density alone cannot tell.
    - ``entropy``: minus the mean prediction entropy (used for validation by Morerio et al.
      2018, "Minimal-entropy correlation alignment for unsupervised deep domain adaptation"),
      pytorch-adapt ``EntropyValidator``.
    - ``bnm``: the nuclear norm of the target softmax predictions over their number (Cui et al.,
      "Towards discriminability and diversity: batch nuclear-norm maximization under label
      insufficient situations", CVPR 2020; as a validator, Musgrave et al. 2022), pytorch-adapt
      ``BNMValidator``: high when predictions are both confident and spread over the classes.

    The unsupervised validators run on their pytorch-adapt default layer: ``entropy``, ``im`` and
    ``bnm`` on logits, ``snd`` on softmax predictions. None reads ``target_features`` at those
    defaults; it is handed over as pytorch-adapt's ``"features"`` entry all the same. SND is
    O(n^2) in time (memory is capped by its 1024-row batches), so the caller bounds n.
    """
    # Imported here: pytorch_adapt pulls in torchmetrics (seconds), and `da adapters` stays fast.
    from pytorch_adapt.validators import BNMValidator, EntropyValidator, IMValidator, SNDValidator

    # CPU: SNDValidator's self-mask (mask_out_self) is built on the CPU whatever the input's device.
    logits = target_logits.detach().float().cpu()
    target_train = {"logits": logits, "preds": torch.softmax(logits, dim=1),
                    "features": target_features.detach()}
    predicted = source_val_logits.detach().argmax(dim=1).cpu()
    return {
        "source_val": (predicted == source_val_labels.cpu()).float().mean().item(),
        # IM = (-mean entropy) + (entropy of the mean prediction); both terms already higher = better.
        "im": float(IMValidator()(target_train=target_train)),
        # SND returns the mean neighbourhood entropy itself: higher = denser clusters = better.
        "snd": float(SNDValidator()(target_train=target_train)),
        # EntropyValidator returns minus the entropy: confident predictions score higher.
        "entropy": float(EntropyValidator()(target_train=target_train)),
        # BNMValidator returns minus the BNM loss, the nuclear norm of the softmax matrix over n.
        "bnm": float(BNMValidator()(target_train=target_train)),
    }


def pick(history: list[dict[str, Any]], validator: str) -> dict[str, Any]:
    """The evaluation row that ``validator`` selects, as ``{"step", "target_test_acc", "score"}``.

    ``history`` rows look like ``{"step": int, "target_test_acc": float, "scores": {name: float}}``.
    A validator picks its highest score (ties: the later step; a NaN score is never preferred).
    ``"oracle"`` picks the best ``target_test_acc``, a labelled upper bound that is no model
    selection (the best ``h_score`` in the open-set and universal settings); ``"last"`` is the last row. ``score`` is the validator's score, the target test
    accuracy for ``"oracle"``, and None for ``"last"``.
    """
    if validator not in PICKS:
        raise DAError(f"unknown validator {validator!r}; valid names: {', '.join(PICKS)}")
    if not history:
        raise DAError(f"no evaluation to pick from with validator {validator!r}: the run has no evaluated step")
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

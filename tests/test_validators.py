"""Validators on synthetic tensors: each score ranks a good target prediction above a bad one."""
from __future__ import annotations

import math

import pytest
import torch

from da.errors import DAError
from da.validators import CLASSIC, PICKS, ScoringInputs, pick, score

N, C, D = 200, 10, 32


def classic(source_logits, source_labels, target_logits, features) -> dict[str, float]:
    """The prediction-based validators every run has scored since the first release."""
    inputs = ScoringInputs(source_logits, source_labels, target_logits, features)
    return score(inputs, CLASSIC)


def scores_for(target_logits: torch.Tensor) -> dict[str, float]:
    g = torch.Generator().manual_seed(1)
    source_logits = torch.randn(50, C, generator=g)
    source_labels = torch.randint(0, C, (50,), generator=g)
    features = torch.randn(len(target_logits), D, generator=g)
    return classic(source_logits, source_labels, target_logits, features)


def one_hot_logits(classes: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(classes, C).float() * scale


def test_score_returns_every_validator_as_a_float():
    s = scores_for(torch.randn(N, C))
    assert set(s) == set(CLASSIC)
    assert all(isinstance(v, float) and math.isfinite(v) for v in s.values())


def test_entropy_scores_confident_above_uniform():
    confident = one_hot_logits(torch.arange(N) % C)
    uniform = torch.zeros(N, C)
    assert scores_for(confident)["entropy"] > scores_for(uniform)["entropy"]
    assert scores_for(uniform)["entropy"] == pytest.approx(-math.log(C), abs=1e-4)


def test_im_scores_confident_and_diverse_above_collapsed():
    diverse = one_hot_logits(torch.arange(N) % C)
    collapsed = one_hot_logits(torch.zeros(N, dtype=torch.long))
    assert scores_for(diverse)["im"] > scores_for(collapsed)["im"] + 1.0
    # Both are confident, so IM tells them apart by the diversity term alone: log C vs 0.
    assert scores_for(diverse)["im"] == pytest.approx(math.log(C), abs=1e-2)


def test_bnm_scores_confident_and_diverse_above_collapsed_and_uniform():
    diverse = one_hot_logits(torch.arange(N) % C)
    collapsed = one_hot_logits(torch.zeros(N, dtype=torch.long))
    uniform = torch.zeros(N, C)
    # One-hot rows over C balanced classes: C orthogonal columns of norm sqrt(N / C).
    assert scores_for(diverse)["bnm"] == pytest.approx(C * math.sqrt(N / C) / N, rel=1e-3)
    assert scores_for(diverse)["bnm"] > 2 * scores_for(collapsed)["bnm"]
    assert scores_for(diverse)["bnm"] > 2 * scores_for(uniform)["bnm"]


def test_snd_scores_clustered_above_random():
    g = torch.Generator().manual_seed(0)
    clustered = one_hot_logits(torch.arange(N) % C, scale=5.0) + 0.5 * torch.randn(N, C, generator=g)
    scattered = 3.0 * torch.randn(N, C, generator=g)
    # Each clustered sample's neighbourhood is its 19 cluster mates: entropy log 19.
    assert scores_for(clustered)["snd"] == pytest.approx(math.log(N // C - 1), abs=1e-2)
    assert scores_for(clustered)["snd"] > scores_for(scattered)["snd"] + 0.2


def test_snd_rates_predictions_that_are_all_alike_highest():
    # A blind spot kept visible: near-uniform (or collapsed) predictions make every sample
    # everyone's neighbour, the maximum entropy log(N - 1).
    g = torch.Generator().manual_seed(0)
    alike = 0.1 * torch.randn(N, C, generator=g)
    assert scores_for(alike)["snd"] == pytest.approx(math.log(N - 1), abs=1e-2)


def test_source_val_is_the_accuracy():
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    predicted = torch.tensor([0, 1, 2, 0, 0, 5, 0, 7])  # 5 of 8 right
    s = classic(one_hot_logits(predicted), labels, torch.randn(20, C), torch.randn(20, D))
    assert s["source_val"] == pytest.approx(5 / 8)


def history() -> list[dict]:
    # The NaN comes first: a plain max() would keep it, since every comparison with NaN is False.
    return [
        {"step": 1000, "target_test_acc": 0.70, "scores": {"im": 1.0, "snd": float("nan"), "entropy": -0.05,
                                                           "source_val": 0.95, "bnm": 0.5}},
        {"step": 2000, "target_test_acc": 0.90, "scores": {"im": 2.0, "snd": 5.0, "entropy": -0.1, "source_val": 0.97,
                                                           "bnm": 0.7}},
        {"step": 3000, "target_test_acc": 0.80, "scores": {"im": 2.0, "snd": 4.0, "entropy": -0.2, "source_val": 0.96,
                                                           "bnm": 0.6}},
    ]


def test_pick_returns_the_best_scored_row():
    assert pick(history(), "entropy") == {"step": 1000, "target_test_acc": 0.70, "score": -0.05}
    assert pick(history(), "snd") == {"step": 2000, "target_test_acc": 0.90, "score": 5.0}  # NaN never wins


def test_pick_breaks_ties_to_the_later_step():
    assert pick(history(), "im") == {"step": 3000, "target_test_acc": 0.80, "score": 2.0}
    reversed_rows = list(reversed(history()))
    assert pick(reversed_rows, "im")["step"] == 3000


def test_pick_oracle_and_last():
    assert pick(history(), "oracle") == {"step": 2000, "target_test_acc": 0.90, "score": 0.90}
    assert pick(history(), "last") == {"step": 3000, "target_test_acc": 0.80, "score": None}


@pytest.mark.parametrize("validator", ("last", "oracle", *CLASSIC))
def test_pick_returns_a_step_in_the_history(validator):
    assert pick(history(), validator)["step"] in {row["step"] for row in history()}


def test_unknown_validator_is_a_one_line_error_listing_the_names():
    with pytest.raises(DAError) as error:
        pick(history(), "devv")
    message = str(error.value)
    assert "\n" not in message and "'devv'" in message
    assert all(name in message for name in PICKS)


def test_a_validator_missing_from_an_older_history_picks_nothing():
    from da.train import selections

    rows = [{**row, "source_test_acc": 0.99} for row in history()]
    older = [{**row, "scores": {k: v for k, v in row["scores"].items() if k != "bnm"}} for row in rows]
    assert set(selections(older)) == {"last", "oracle", *CLASSIC} - {"bnm"}
    assert selections(rows)["bnm"]["step"] == 2000


def test_empty_history_is_a_one_line_error():
    with pytest.raises(DAError, match="no evaluation"):
        pick([], "im")


def test_picking_by_a_validator_the_run_did_not_score_is_a_one_line_error():
    with pytest.raises(DAError) as error:
        pick(history(), "mixval")
    assert "\n" not in str(error.value) and "train.validators" in str(error.value)

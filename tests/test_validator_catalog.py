"""The validators beyond the classic five, on synthetic tensors: each ranks a good model above a bad
one; the weighted Spearman correlation equals its reference formula; a run scores only what
train.validators lists."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import rankdata, spearmanr

from da.validators import CATALOG, VALIDATORS, ScoringInputs, score
from da.validators.correlation import spearman, weighted_spearman

C, D = 5, 16


def clustered(n: int, centres: torch.Tensor, g: torch.Generator, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(n) % len(centres)
    return centres[labels] + noise * torch.randn(n, centres.shape[1], generator=g), labels


def inputs_for(target_shift: float = 0.0, source_correct: bool = True, pseudo_right: bool = True) -> ScoringInputs:
    """Source and target features in C clusters (the target's shifted by ``target_shift``); logits a
    linear read-out of the cluster; ``source_correct``: source predictions right or all wrong;
    ``pseudo_right``: target predictions follow the clusters or are shuffled."""
    g = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(C, D, generator=g)
    fs, ys = clustered(200, centres, g)
    ft, yt = clustered(300, centres, g)
    ft = ft + target_shift
    logits_s = 8 * torch.nn.functional.one_hot(ys if source_correct else (ys + 1) % C, C).float()
    pseudo = yt if pseudo_right else yt[torch.randperm(len(yt), generator=g)]
    logits_t = 8 * torch.nn.functional.one_hot(pseudo, C).float()
    return ScoringInputs(logits_s, ys, logits_t, ft, source_features=fs)


def test_every_validator_gives_a_finite_float_with_what_it_needs():
    inputs = inputs_for()
    inputs.target_images = lambda index: inputs.target_features[index]
    inputs.predict = lambda x: x @ torch.randn(D, C, generator=torch.Generator().manual_seed(1))
    s = score(inputs, VALIDATORS)
    assert set(s) == set(VALIDATORS) and len(VALIDATORS) >= 10
    assert all(math.isfinite(v) for v in s.values()), s


def test_class_ami_is_high_when_pseudo_labels_follow_the_clusters():
    good, bad = inputs_for(), inputs_for(pseudo_right=False)
    assert CATALOG["class_ami"].score(good) > 0.9 > 0.2 > CATALOG["class_ami"].score(bad)


def test_domain_knn_and_mmd_prefer_aligned_domains():
    aligned, shifted = inputs_for(0.0), inputs_for(5.0)
    for name in ("knn", "mmd"):
        assert CATALOG[name].score(aligned) > CATALOG[name].score(shifted), name
    assert abs(CATALOG["mmd"].score(aligned)) < 0.05  # an unbiased estimate: about 0 for one distribution


def test_target_knn_rewards_pseudo_labels_that_match_the_nearest_source_label():
    assert CATALOG["target_knn"].score(inputs_for()) > 0.9 > 0.4 > CATALOG["target_knn"].score(inputs_for(pseudo_right=False))


def test_nearest_source_and_dev_follow_the_source_errors():
    right, wrong = inputs_for(), inputs_for(source_correct=False)
    assert CATALOG["nearest_source"].score(right) == pytest.approx(1.0)
    assert CATALOG["nearest_source"].score(wrong) == pytest.approx(0.0)
    assert CATALOG["dev"].score(right) > CATALOG["dev"].score(wrong)


def test_diversity_prefers_spread_predictions_to_collapsed_ones():
    spread = inputs_for()
    collapsed = inputs_for()
    collapsed.target_logits = 8 * torch.nn.functional.one_hot(torch.zeros(300, dtype=torch.long), C).float()
    assert CATALOG["diversity"].score(spread) > CATALOG["diversity"].score(collapsed) + 1.0


def test_mixval_counts_mixed_probes_that_keep_the_dominant_pseudo_label():
    """A linear model keeps the 0.55 partner's label on every mixture (ICE 1); a model that answers
    another class on anything but a probe image keeps none (ICE 0). Pairs are mirrors within batches
    of 128; intra-cluster pairs share a pseudo-label."""
    n = 40
    labels = torch.arange(n) % C
    images = torch.nn.functional.one_hot(labels, C).float() + 0.05 * torch.rand(n, C, generator=torch.Generator().manual_seed(0))
    inputs = ScoringInputs(torch.zeros(1, C), torch.zeros(1, dtype=torch.long), 5 * images, images,
                           target_images=lambda index: images[index])
    inputs.predict = lambda x: x
    assert CATALOG["mixval"].score(inputs) == 1.0 and CATALOG["mixval_intra"].score(inputs) == 1.0

    def memorised(x: torch.Tensor) -> torch.Tensor:
        known = (torch.cdist(x, images) < 1e-6).any(dim=1)
        shifted = torch.roll(x, 1, dims=1)
        return torch.where(known[:, None], x, shifted)

    inputs.predict = memorised
    assert CATALOG["mixval"].score(inputs) == 0.0 and CATALOG["mixval_intra"].score(inputs) == 0.0


def _reference_weighted_spearman(x: np.ndarray, y: np.ndarray, power: float = 2.0) -> float:
    """Musgrave et al.'s weighted_spearman: WeightedCorr(x, y, w)(method="spearman") with
    w = (dense rank of x / its max) ** power, written out with plain loops."""
    dense = rankdata(x, method="dense")
    w = (dense / dense.max()) ** power

    def wrank(v):
        r = rankdata(v)
        out = np.empty(len(v))
        for value in np.unique(r):
            members = np.flatnonzero(r == value)
            below = sum(w[i] for i in range(len(v)) if r[i] < value)
            mass = sum(w[i] for i in members)
            out[members] = below + (len(members) + 1) / 2 * mass / len(members)
        return out

    rx, ry = wrank(x), wrank(y)
    mx, my = np.sum(rx * w) / w.sum(), np.sum(ry * w) / w.sum()
    cov = lambda a, b, ma, mb: np.sum(w * (a - ma) * (b - mb))
    return cov(rx, ry, mx, my) / math.sqrt(cov(rx, rx, mx, mx) * cov(ry, ry, my, my))


def test_weighted_spearman_equals_the_reference_and_spearman_at_power_zero():
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = np.round(rng.normal(size=40), 1)  # with ties
        y = x + rng.normal(size=40)
        assert weighted_spearman(x, y) == pytest.approx(_reference_weighted_spearman(x, y), abs=1e-12)
        assert spearman(x, y) == pytest.approx(spearmanr(x, y).correlation, abs=1e-12)


def test_weighted_spearman_weighs_the_top_of_the_ranking():
    acc = np.arange(20, dtype=float)
    top_right = np.concatenate([acc[:10][::-1], acc[10:]])  # bottom half reversed, top half right
    bottom_right = np.concatenate([acc[:10], acc[10:][::-1]])  # top half reversed
    assert spearman(top_right, acc) == pytest.approx(spearman(bottom_right, acc))
    assert weighted_spearman(top_right, acc) > weighted_spearman(bottom_right, acc) + 0.3
    assert weighted_spearman(acc, acc) == pytest.approx(1.0)
    assert weighted_spearman([math.nan, 1.0, 2.0], [0.1, 0.2, 0.3]) == weighted_spearman([1.0, 1.0, 2.0], [0.1, 0.2, 0.3])


def test_a_run_scores_only_the_validators_it_lists(tmp_path, write_config, cli):
    from tests.conftest import tiny_config

    path = write_config(tiny_config(train={"validators": ["im", "knn", "mixval"]}))
    code, _, err = cli("train", "-c", path, "--out", tmp_path / "run", "-q")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    scored = [row["scores"] for row in rows if "scores" in row]
    assert scored and all(set(s) == {"im", "knn", "mixval"} for s in scored)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["selection"]) == {"last", "im", "knn", "mixval", "oracle"}


@pytest.mark.parametrize("validators, message", [
    (["im", "bogus"], "unknown validator 'bogus'"),
    ([], "is empty"),
])
def test_a_bad_validator_list_is_one_line(tmp_path, write_config, cli, validators, message):
    from tests.conftest import one_line_error, tiny_config

    code, _, err = cli("train", "-c", write_config(tiny_config(train={"validators": validators})), "--out", tmp_path / "r")
    assert code == 2 and message in one_line_error(err)
    assert not (tmp_path / "r").exists()


def test_a_run_scores_every_validator_by_default(tmp_path, write_config, cli):
    from tests.conftest import tiny_config

    cfg = tiny_config()
    del cfg["train"]["validators"]  # the suite's tiny config lists the classic five; a user's config need not
    code, _, err = cli("train", "-c", write_config(cfg), "--out", tmp_path / "run", "-q")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(set(row["scores"]) == set(VALIDATORS) for row in rows if "scores" in row)

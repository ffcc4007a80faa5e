"""``da validators``: per task, each validator's weighted Spearman correlation with target accuracy
and the accuracy of its pick, over the runs under a folder; bad input is one line."""
from __future__ import annotations

import csv
import json

import yaml

from da.bench.validator_report import best_validators, gather, grade
from tests.conftest import one_line_error


def fake_run(folder, source: str, target: str, accs: list[float], scores: dict[str, list[float]], adapter: str = "dann"):
    """A finished run's files as ``da train`` writes them: config.yaml and one metrics row per evaluation."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"data": {"source": source, "target": target},
                                                         "adapter": {"name": adapter}}))
    rows = [{"stage": "pretrain", "step": 0, "target_test_acc": 0.1}]  # pretraining rows carry no scores
    rows += [{"stage": "adapt", "step": 100 * (i + 1), "target_test_acc": a, "scores": {k: v[i] for k, v in scores.items()}}
             for i, a in enumerate(accs)]
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def bench_folder(tmp_path):
    accs = [[0.70, 0.80, 0.90], [0.60, 0.95, 0.85]]
    for i, a in enumerate(accs):
        fake_run(tmp_path / "b" / "mnist-usps" / f"dann/seed{i}", "mnist", "usps", a,
                 {"im": a, "entropy": [-x for x in a], "snd": [0.5, 0.5, 0.5]})
    fake_run(tmp_path / "b" / "usps-usps" / "target_only/seed0", "usps", "usps", [0.99], {"im": [1.0]})
    return tmp_path / "b"


def test_grade_ranks_a_validator_that_follows_accuracy_first(tmp_path):
    rows = grade(gather([bench_folder(tmp_path)]))
    by = {(r["task"], r["validator"]): r for r in rows}
    im, entropy = by["mnist->usps", "im"], by["mnist->usps", "entropy"]
    assert im["weighted_spearman"] == 1.0 and entropy["weighted_spearman"] < -0.99
    assert im["pick_acc"] == by["mnist->usps", "oracle"]["pick_acc"] == 95.0
    assert entropy["pick_acc"] == 60.0  # its best score is the worst checkpoint
    assert im["per_run_pick_acc"] == 92.5 and by["mnist->usps", "last"]["per_run_pick_acc"] == 87.5
    assert im["candidates"] == 6 and im["runs"] == 2
    assert best_validators(rows)["mnist->usps"] == "im"


def test_da_validators_writes_the_report_and_prints_the_table(tmp_path, cli):
    folder = bench_folder(tmp_path)
    code, out, err = cli("validators", folder)
    assert code == 0, err
    assert "mnist->usps: best validator im" in out
    assert "usps->usps" in out  # a task of its own: never mixed into mnist->usps
    rows = list(csv.DictReader((folder / "validators.csv").open()))
    assert {r["validator"] for r in rows if r["task"] == "mnist->usps"} == {"im", "entropy", "snd", "oracle", "last"}
    assert (folder / "validators.md").read_text().startswith("# Validators")
    assert (folder / "validators.png").stat().st_size > 0
    again = (folder / "validators.csv").read_text()
    cli("validators", folder)
    assert (folder / "validators.csv").read_text() == again  # reproducible


def test_bad_validator_report_input_is_one_line(tmp_path, cli):
    folder = bench_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    for args, message in [((tmp_path / "empty",), "no evaluated checkpoint"),
                          ((tmp_path / "nowhere",), "does not exist"),
                          ((folder, "--validators", "oracle"), "unknown validator 'oracle'"),
                          ((folder, "--validators", "mixval"), "was not scored")]:
        code, _, err = cli("validators", *args)
        assert code == 2 and message in one_line_error(err), (args, err)

"""``da tune``: a seeded Optuna search whose objective is a validator; the same seed gives the same
trials; a search cut off mid-trial resumes to the same trials; bad input is one line."""
from __future__ import annotations

import csv

import pytest

from da.composition import load_config
from tests.conftest import one_line_error, tiny_config

SPACE = ["--space", "adapter.weight=log:0.1:10", "--space", "train.lr=log:0.001:0.05"]


def search_config(write_config):
    cfg = tiny_config(train={"steps": 4, "eval_every": 2, "checkpoint_every": 4})
    return write_config(cfg)


def trials(folder) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "run"} for row in csv.DictReader((folder / "trials.csv").open())]


def test_a_search_is_reproducible_and_ends_with_a_rerunnable_best_yaml(tmp_path, write_config, cli):
    config = search_config(write_config)
    args = ["tune", "-c", config, "--trials", "3", "--objective", "im", "--pruner", "none", *SPACE]
    code, out, err = cli(*args, "--out", tmp_path / "a")
    assert code == 0, err
    assert cli(*args, "--out", tmp_path / "b")[0] == 0
    first = trials(tmp_path / "a")
    assert first == trials(tmp_path / "b") and len(first) == 3
    assert len({row["adapter.weight"] for row in first}) == 3  # three draws, not one
    best = load_config(tmp_path / "a" / "best.yaml")
    chosen = max(first, key=lambda r: float(r["objective"]))
    assert best.adapter.kwargs["weight"] == pytest.approx(float(chosen["adapter.weight"]))
    assert best.pretrain.checkpoint is None  # it pretrains as the searched config did: it reruns anywhere
    assert (tmp_path / "a" / "trials" / "0000" / "summary.json").is_file()
    assert "target test accuracy" in (tmp_path / "a" / "trials.md").read_text()


@pytest.mark.slow
def test_a_search_cut_off_mid_trial_resumes_to_the_same_trials(tmp_path, write_config, cli, monkeypatch):
    import da.bench.tune as tune_module

    config = search_config(write_config)
    args = ["tune", "-c", config, "--trials", "3", "--objective", "im", "--pruner", "none", *SPACE]
    assert cli(*args, "--out", tmp_path / "whole")[0] == 0
    real, calls = tune_module.train, []

    def killed_on_the_second_trial(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill: the trial stays "running" in the study
        return real(*a, **kw)

    monkeypatch.setattr(tune_module, "train", killed_on_the_second_trial)
    code, _, _ = cli(*args, "--out", tmp_path / "cut")
    assert code == 130
    monkeypatch.setattr(tune_module, "train", real)
    code, _, err = cli(*args, "--out", tmp_path / "cut")
    assert code == 0, err
    resumed = trials(tmp_path / "cut")
    assert [r["state"] for r in resumed] == ["complete", "killed", "complete", "complete"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "trial"} for r in rows if r["state"] == "complete"]
    assert strip(resumed) == strip(trials(tmp_path / "whole"))
    assert (tmp_path / "cut" / "best.yaml").read_text() == (tmp_path / "whole" / "best.yaml").read_text()


@pytest.mark.parametrize("extra, message", [
    (["--objective", "oracle"], "reads target labels"),
    (["--objective", "target_test_acc"], "reads target labels"),
    (["--objective", "im", "--space", "adapter.weight=log:10:1"], "empty range"),
    (["--objective", "im", "--space", "train.lrr=log:0.001:0.1"], "train.lrr"),
    (["--objective", "im", "--space", "adapter.wieght=log:0.1:1"], "wieght"),
    (["--objective", "im", "--space", "adapter.weight=choice:"], "choice has no value"),
])
def test_bad_search_input_is_one_line_and_creates_nothing(tmp_path, write_config, cli, extra, message):
    code, _, err = cli("tune", "-c", search_config(write_config), "--trials", "2", "--out", tmp_path / "s", *extra)
    assert code == 2 and message in one_line_error(err)
    assert not (tmp_path / "s").exists()


def test_a_storage_of_another_search_is_refused_and_kept(tmp_path, write_config, cli):
    config = search_config(write_config)
    args = ["tune", "-c", config, "--trials", "1", "--pruner", "none", "--out", tmp_path / "s", *SPACE]
    assert cli(*args, "--objective", "im")[0] == 0
    before = (tmp_path / "s" / "study.db").read_bytes()
    code, _, err = cli(*args, "--objective", "entropy")
    assert code == 2 and "holds another search" in one_line_error(err)
    assert (tmp_path / "s" / "study.db").read_bytes() == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    code, _, err = cli("tune", "-c", config, "--trials", "1", "--objective", "im", "--out", tmp_path / "other", *SPACE)
    assert code == 2 and "holds no search" in one_line_error(err)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_report_on_runs_best_yaml_on_another_task(tmp_path, write_config, cli):
    """The nested protocol: the chosen settings, with --report-set's longer schedule, run as a benchmark."""
    import json

    config = search_config(write_config)
    code, out, err = cli("tune", "-c", config, "--trials", "1", "--objective", "im", "--pruner", "none",
                         "--out", tmp_path / "s", *SPACE, "--report-on", "synthetic->synthetic", "--report-seeds", "0",
                         "--report-set", "train.steps=6")
    assert code == 0, err
    best = load_config(tmp_path / "s" / "best.yaml")
    run = tmp_path / "s" / "report" / "synthetic-synthetic" / "tuned" / "seed0"
    ran = load_config(run / "config.yaml")
    assert ran.adapter.kwargs["weight"] == best.adapter.kwargs["weight"] and ran.train.steps == 6 != best.train.steps
    assert json.loads((run / "summary.json").read_text())["target_test_acc"] >= 0
    assert (tmp_path / "s" / "report" / "results.md").is_file()


@pytest.mark.slow
def test_ray_one_trial_at_a_time_draws_and_scores_the_trials_of_the_local_launcher(tmp_path, write_config, cli):
    pytest.importorskip("ray.tune")
    config = search_config(write_config)
    args = ["tune", "-c", config, "--trials", "3", "--objective", "im", "--pruner", "none", *SPACE]
    assert cli(*args, "--out", tmp_path / "local")[0] == 0
    code, out, err = cli(*args, "--out", tmp_path / "ray", "--launcher", "ray", "--jobs", "1")
    assert code == 0, err
    assert "[3/3] trial 2: im" in out
    scores = lambda rows: [float(r["objective"]) for r in rows]
    local, ray = trials(tmp_path / "local"), trials(tmp_path / "ray")
    assert scores(ray) == pytest.approx(scores(local), abs=1e-6)
    drop = lambda rows: [{k: v for k, v in r.items() if k not in ("objective", "target_test_acc")} for r in rows]
    assert drop(ray) == drop(local)
    assert (tmp_path / "ray" / "trials" / "0002" / "summary.json").is_file()
    assert (tmp_path / "ray" / "best.yaml").read_text() == (tmp_path / "local" / "best.yaml").read_text()


@pytest.mark.slow
def test_ray_runs_trials_side_by_side_and_the_search_resumes_locally(tmp_path, write_config, cli):
    pytest.importorskip("ray.tune")
    config = search_config(write_config)
    args = ["tune", "-c", config, "--objective", "im", "--pruner", "none", *SPACE, "--out", tmp_path / "s"]
    code, _, err = cli(*args, "--trials", "2", "--launcher", "ray", "--jobs", "2")
    assert code == 0, err
    code, _, err = cli(*args, "--trials", "3")  # the same study, one trial more, here
    assert code == 0, err
    rows = trials(tmp_path / "s")
    assert [r["state"] for r in rows] == ["complete"] * 3
    assert all((tmp_path / "s" / "trials" / f"{n:04d}" / "summary.json").is_file() for n in range(3))

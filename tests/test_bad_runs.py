"""Every config that validates either trains or stops with one line (issue: fuzzing whole runs).

Hypothesis draws configs that pass ``--dry-run`` over the keys a user changes and runs them for
real on the synthetic pair: each run finishes with finite figures in range, or exits 2 with one line
that names the key, and its folder is resumable or marked ``failed``. What depends only on the
config and the data sizes is refused before a run folder exists, by ``--dry-run`` too.
"""
from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import one_line_error, tiny_config
from da.checkpoint import load_checkpoint

ADAPTERS = ["source_only", "dann", "mmd", "coral", "cdan", "subspace"]
SECTIONS = ("data.", "train.", "pretrain.", "model.", "adapter", "stages", "device")


@st.composite
def run_configs(draw) -> dict:
    adapter = draw(st.sampled_from(ADAPTERS))
    bottleneck = draw(st.sampled_from([None, 8]))
    train = {
        "steps": draw(st.integers(0, 4)), "batch_size": draw(st.sampled_from([1, 2, 16, 200, 300])),
        "eval_every": draw(st.integers(1, 5)), "checkpoint_every": draw(st.integers(1, 5)),
        "log_every": draw(st.integers(1, 5)), "lr": draw(st.sampled_from([0.0, 0.01, 0.5])),
        "lr_schedule": draw(st.sampled_from(["constant", "inv", "cosine"])),
        "extractor": draw(st.sampled_from(["finetune", "freeze"])),
        "batch_norm": draw(st.sampled_from(["shared", "per_domain"])) if bottleneck else "shared",
        "extractor_lr_mult": draw(st.sampled_from([0.0, 0.1, 1.0])),
        "source_weight": draw(st.sampled_from([0.0, 1.0])),
        "precision": draw(st.sampled_from(["fp32", "bf16"])),
    }
    if draw(st.booleans()):
        train["early_stopping"] = {"validator": draw(st.sampled_from(["source_val", "im", "snd", "entropy"])),
                                   "patience": draw(st.integers(1, 2))}
    if draw(st.booleans()) and train["extractor"] == "finetune":
        train["lr_mults"] = {"conv1": draw(st.sampled_from([0.0, 0.5]))}
    data = {"source": "synthetic", "target": "synthetic",
            "source_val_size": draw(st.sampled_from([0, 1, 64, 255, 256])),
            "target_labels_per_class": draw(st.sampled_from([0, 0, 1, 70, "all"]))}
    if draw(st.booleans()):
        data["augment"] = {"rotate": draw(st.sampled_from([0, 30])), "scale": [0.9, 1.2],
                           "domains": draw(st.sampled_from([["source"], ["source", "target"]]))}
    cfg = tiny_config(data=data, train=train, pretrain={"steps": draw(st.integers(0, 3)),
                                                         "batch_size": draw(st.sampled_from([2, 16, 300]))})
    cfg["model"] = {"bottleneck": bottleneck}
    cfg["adapter"] = {"name": adapter, **({"dims": 4, "classifier": "linear"} if adapter == "subspace" else {})}
    return cfg


def finite_in_range(summary: dict) -> None:
    for key in ("source_test_acc", "target_test_acc", "source_val_acc"):
        assert 0.0 <= summary[key] <= 1.0 and math.isfinite(summary[key]), (key, summary[key])
    for row in summary["history"]:
        assert all(0.0 <= row[k] <= 1.0 for k in ("source_test_acc", "target_test_acc", "source_val_acc"))


def run_one(cfg: dict, tmp_path, cli) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, _, err = cli("train", "-c", path, "--dry-run")
    if code == 2:
        line = one_line_error(err)
        assert any(s in line for s in SECTIONS), line
        return
    assert code == 0, err
    out = tmp_path / "run"
    code, _, err = cli("train", "-c", path, "--out", out, "-q")
    if code == 0:
        finite_in_range(json.loads((out / "summary.json").read_text()))
        return
    line = one_line_error(err)
    assert code == 2, err
    assert any(s in line for s in SECTIONS) or "loss became" in line, line
    if out.exists():  # stopped during the run: marked failed, with a loadable checkpoint or none
        assert (out / "failed").read_text().strip() == line.removeprefix("da: error: ")
        if (out / "checkpoint.pt").exists():
            load_checkpoint(out / "checkpoint.pt")


# Failing examples the fuzzing found, kept as regression cases.
REGRESSIONS = [
    {**tiny_config(train={"steps": 2, "batch_size": 300}), "model": {"bottleneck": None}},
    # early stopping with no adaptation step restored a best.pt that was never written
    tiny_config(pretrain={"steps": 0}, train={"steps": 0, "early_stopping": {"validator": "source_val", "patience": 1}}),
    # a 0-step adaptation stage built a sampler whose batch did not fit the split
    tiny_config(pretrain={"steps": 0}, train={"steps": 0, "batch_size": 300}),
    # coral's covariance divided by n - 1 = 0 on a batch of one image
    {**tiny_config(pretrain={"steps": 0}, train={"steps": 1, "batch_size": 1}), "adapter": {"name": "coral"}},
]


@pytest.mark.parametrize("cfg", REGRESSIONS)
def test_regressions(cfg, tmp_path_factory, cli):
    run_one(cfg, tmp_path_factory.mktemp("r"), cli)


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cfg=run_configs())
def test_generated_runs_finish_or_stop_with_one_line(cfg, tmp_path_factory, cli):
    run_one(cfg, tmp_path_factory.mktemp("r"), cli)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cfg=run_configs())
def test_many_generated_runs_finish_or_stop_with_one_line(cfg, tmp_path_factory, cli):
    run_one(cfg, tmp_path_factory.mktemp("r"), cli)


def test_a_batch_larger_than_its_split_is_refused_before_a_run_folder_exists(write_config, tmp_path, cli):
    path = write_config(tiny_config(train={"batch_size": 300}))
    code, _, err = cli("train", "-c", path, "--dry-run")
    assert code == 2 and "config key train.batch_size=300 exceeds the 192 images of source train" in one_line_error(err)
    code, _, err = cli("train", "-c", path, "--out", tmp_path / "never")
    assert code == 2 and not (tmp_path / "never").exists()


def test_resuming_a_run_whose_config_yaml_was_edited_is_refused_and_nothing_changes(write_config, tmp_path, cli, monkeypatch):
    from conftest import stop_at

    path = write_config(tiny_config())
    stop_at(monkeypatch, 3)
    code, _, _ = cli("train", "-c", path, "--out", tmp_path / "run", "-q")
    monkeypatch.undo()
    assert code == 2
    edited = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    edited["train"]["lr"] = 0.5
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(edited))
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    code, _, err = cli("train", "--resume", tmp_path / "run")
    assert code == 2 and "differs from the config its checkpoint was taken with in train.lr" in one_line_error(err)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


def test_a_non_finite_loss_marks_the_folder_failed_and_keeps_the_checkpoint(write_config, tmp_path, cli):
    cfg = tiny_config(train={"steps": 30, "lr": 1e6, "checkpoint_every": 1, "batch_size": 16})
    code, _, err = cli("train", "-c", write_config(cfg), "--out", tmp_path / "run", "-q")
    line = one_line_error(err)
    assert code == 2 and "loss became" in line
    assert (tmp_path / "run" / "failed").read_text().strip() == line.removeprefix("da: error: ")
    load_checkpoint(tmp_path / "run" / "checkpoint.pt")


def test_da_eval_on_a_folder_that_is_not_a_run_is_one_line(tmp_path, cli):
    code, _, err = cli("eval", tmp_path)
    assert code == 2 and "is not a run folder" in one_line_error(err)


@pytest.mark.parametrize("bench, extra, message", [
    ("directions: [synthetic->synthetic]\nadapters:\n  a: CFG\n  a: CFG\n", [], "key 'a' appears twice in one mapping"),
    ("directions: [synthetic->nope]\nadapters: {a: CFG}\n", [], "unknown dataset 'nope'"),
    ("directions: [synthetic->synthetic]\nadapters: {a: CFG}\n", ["--grid", "adapter.kernel_powers=1,2"],
     "does not take 'kernel_powers'"),
])
def test_benchmarks_whose_entries_clash_are_one_line_and_create_nothing(bench, extra, message, write_config, tmp_path, cli):
    cfg = write_config(tiny_config())
    path = tmp_path / "bench.yaml"
    path.write_text("seeds: [0]\n" + bench.replace("CFG", str(cfg)))
    code, _, err = cli("bench", "-c", path, "--out", tmp_path / "out", *extra)
    assert code == 2 and message in one_line_error(err)
    assert not (tmp_path / "out").exists()

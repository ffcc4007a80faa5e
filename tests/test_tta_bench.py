"""Test-time adaptation in `da bench`: named stream domains, one source model across streams, and
results.md's online table."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from conftest import tiny_config
from da.bench.online import online_section
from da.bench.plan import load_bench_config, plan_runs


def tta_file(tmp_path: Path, **extra) -> Path:
    cfg = tiny_config(model={"backbone": "lenet_bn", "bottleneck": 32}, pretrain={"steps": 20, "batch_size": 16},
                      train={"steps": 0}, stages=["pretrain", {"name": "tent", "batch_size": 32}])
    cfg["adapter"] = {"name": "source_only"}
    (tmp_path / "tent.yaml").write_text(yaml.safe_dump(cfg))
    cfg["stages"] = ["pretrain", {"name": "norm", "batch_size": 32}]
    (tmp_path / "norm.yaml").write_text(yaml.safe_dump(cfg))
    bench = {"seeds": [0], "adapters": {"norm": "norm.yaml", "tent": "tent.yaml"}, **extra}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(bench))
    return path


def test_a_direction_names_a_domain_alias_and_source_sharing_pretrains_once_across_targets(tmp_path):
    extra = {"directions": ["mnist->usps", "mnist->stream"], "domains": {"stream": ["usps", "mnist_m"]}}
    per_target = plan_runs(load_bench_config(tta_file(tmp_path, **extra)))
    across = plan_runs(load_bench_config(tta_file(tmp_path, share_pretraining="source", **extra)))
    assert [r.config["data"]["target"] for r in per_target if r.direction == "mnist->stream" and r.adapter != "pretrain"] == [["usps", "mnist_m"]] * 2
    assert sum(r.adapter == "pretrain" for r in per_target) == 2
    # a pretraining run adapts to nothing, and a stream of domains is refused outside a test-time stage
    assert sorted(r.config["data"]["target"] for r in per_target if r.adapter == "pretrain") == ["usps", "usps"]
    assert sum(r.adapter == "pretrain" for r in across) == 1
    (pretraining,) = [r.key for r in across if r.adapter == "pretrain"]
    assert {r.after for r in across if r.adapter != "pretrain"} == {pretraining}


def row(adapter: str, direction: str, seed: int, acc: float, online: float | None, source: float,
        backbone: str = "lenet_bn") -> dict:
    return {"adapter": adapter, "direction": direction, "seed": seed, "selection": "last", "target_test_acc": acc,
            "online_acc": online, "pretrain_target_test_acc": source, "backbone": backbone}


def test_the_online_table_gives_errors_per_method_and_stream_with_the_source_model_and_offline_methods():
    rows = [row("tent", "m->a", 0, 0.9, 0.8, 0.5), row("tent", "m->a", 1, 0.9, 0.9, 0.7),
            row("tent", "m->b", 0, 0.9, 0.6, 0.4), row("shot", "m->a", 0, 0.95, None, 0.5)]
    lines = online_section(rows)
    table = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ")}
    assert table["method"] == "| method | a | b | mean |"
    assert table["source model"] == "| source model | 40.0 ± 14.1 | 60.0 | 50.0 |"  # one seed: no std
    assert table["tent"] == "| tent | 15.0 ± 7.1 | 40.0 | 27.5 |"
    assert table["shot †"] == "| shot † | 5.0 |  |  |"  # offline: its final model's error
    speed = [{"adapter": "tent", "images_per_s": 640.0, "online": True, "batch_size": 64},
             {"adapter": "tent_bs1", "images_per_s": 200.0, "online": True, "batch_size": 1}]
    lines = online_section(rows, speed)
    assert "| tent | 64 | 640 | 100.0 |" in lines and "| tent_bs1 | 1 | 200 | 5.0 |" in lines
    assert online_section([{**r, "online_acc": None} for r in rows]) == []  # no test-time run, no section


def test_runs_on_two_backbones_get_a_source_row_each():
    rows = [row("tent", "m->a", 0, 0.9, 0.8, 0.5), row("tent_gn", "m->a", 0, 0.9, 0.75, 0.7, backbone="lenet_gn")]
    table = {line.split(" | ")[0].strip("| "): line for line in online_section(rows) if line.startswith("| ")}
    assert table["source model (lenet_bn)"] == "| source model (lenet_bn) | 50.0 | 50.0 |"
    assert table["source model (lenet_gn)"] == "| source model (lenet_gn) | 30.0 | 30.0 |"


@pytest.mark.slow  # a bench of three tiny runs in worker processes
def test_a_test_time_bench_writes_online_accuracy_and_its_table(cli, tmp_path):
    path = tta_file(tmp_path, directions=["synthetic->synthetic"])
    code, _, err = cli("bench", "-c", path, "--out", tmp_path / "out")
    assert code == 0, err
    with (tmp_path / "out" / "results.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["selection"] == "last"]
    assert {r["adapter"] for r in rows} == {"norm", "tent"} and all(0 < float(r["online_acc"]) <= 1 for r in rows)
    text = (tmp_path / "out" / "results.md").read_text()
    assert "## Test-time adaptation: online error (%)" in text and "| source model |" in text and "| tent |" in text

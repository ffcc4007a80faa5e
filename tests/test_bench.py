"""`da bench`: the sweep's rows, its tables, resuming it, and the launchers agreeing."""
from __future__ import annotations

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

from conftest import ROOT, one_line_error, tiny_config
from da.validators import CLASSIC

SELECTIONS = {"last", "oracle", *CLASSIC}  # the validators tiny_config scores


@pytest.fixture
def bench_file(tmp_path):
    """A benchmark of two tiny adapters (source_only, dann) x two seeds on the synthetic pair."""

    def write(seeds=(0, 1), train_steps: int = 6, extra_adapters: dict | None = None, **extra) -> Path:
        adapter_cfg = tmp_path / "tiny.yaml"
        cfg = tiny_config(train={"steps": train_steps})
        adapter_cfg.write_text(yaml.safe_dump(cfg))
        bench = {"seeds": list(seeds), "directions": ["synthetic->synthetic"],
                 "adapters": {"source_only": {"config": "tiny.yaml", "set": {"adapter": {"name": "source_only"}}},
                              "dann": "tiny.yaml", **(extra_adapters or {})},
                 **extra}
        path = tmp_path / "bench.yaml"
        path.write_text(yaml.safe_dump(bench))
        return path

    return write


def read_rows(out: Path) -> list[dict]:
    with (out / "results.csv").open() as f:
        return list(csv.DictReader(f))


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]


@pytest.mark.slow  # among the longest of the default suite (kept for CI's slow pass)
def test_bench_writes_one_row_per_run_and_rule_and_tables_the_means(cli, bench_file, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = cli("bench", "-c", bench_file(), "--out", out)
    assert code == 0, err
    assert stdout.count("finished") == 6  # 2 shared pretraining runs + 2 adapters x 2 seeds
    rows = read_rows(out)
    assert {(r["adapter"], r["seed"], r["selection"]) for r in rows} == {
        (a, s, sel) for a in ("source_only", "dann") for s in ("0", "1") for sel in SELECTIONS}
    assert len(rows) == 4 * len(SELECTIONS)  # 2 adapters x 2 seeds
    for row in rows:  # every rule picks a step that was evaluated, with that step's accuracy
        evaluated = {r["step"]: r for r in map(json.loads, (out / row["run"] / "metrics.jsonl").read_text().splitlines())
                     if r["stage"] == "adapt"}
        assert int(row["step"]) in evaluated
        assert float(row["target_test_acc"]) == pytest.approx(evaluated[int(row["step"])]["target_test_acc"])
    last = [r for r in rows if r["adapter"] == "dann" and r["selection"] == "last"]
    summaries = [json.loads((out / r["run"] / "summary.json").read_text()) for r in last]
    accs = [s["target_test_acc"] for s in summaries]
    assert [float(r["target_test_acc"]) for r in last] == accs
    cell = f"{100 * statistics.mean(accs):.1f} ± {100 * statistics.stdev(accs):.1f}"
    dann_line = next(line for line in (out / "results.md").read_text().splitlines() if line.startswith("| dann"))
    assert dann_line.split("|")[2].strip() == cell
    # Both seeds' adapters start from their seed's shared pretraining run.
    for s in summaries:
        config = yaml.safe_load((out / f"synthetic-synthetic/dann/seed{s['seed']}/config.yaml").read_text())
        assert f"/pretrain/seed{s['seed']}-" in config["pretrain"]["checkpoint"]
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "tsne.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Rerunning the same command skips every finished run and rewrites the same table.
    checkpoint = out / last[0]["run"] / "checkpoint.pt"
    before = checkpoint.stat().st_mtime_ns
    code, stdout, _ = cli("bench", "-c", bench_file(), "--out", out)
    assert code == 0 and stdout.count("skipped") == 6 and "finished" not in stdout
    assert checkpoint.stat().st_mtime_ns == before
    assert without_timing(read_rows(out)) == without_timing(rows)
    # The projector is written afresh (one event file, not a rerun's beside the last), without
    # TensorBoard's "Embedding dir exists" warning.
    assert len(list((out / "projector").rglob("events.out.tfevents*"))) == 1
    assert "Embedding dir exists" not in stdout


def interrupt_bench(bench: Path, out: Path, ready: Callable[[], bool], sig: int, *args: str) -> tuple[int, str, str]:
    """Start `da bench -c bench ... --out out` in its own process, send it ``sig`` once ``ready()``
    holds while the sweep still runs, and wait for it: (exit code, stdout, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "da.cli", "bench", "-c", str(bench), *args, "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep ended before it could be interrupted; make the runs longer"
        os.kill(proc.pid, sig)
        stdout, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stdout, err


@pytest.mark.slow  # among the longest of the default suite (kept for CI's slow pass)
def test_a_run_killed_midway_is_resumed_and_ends_as_if_never_killed(cli, bench_file, tmp_path):
    # No pretraining run (pretrain.steps 0): the killed process goes straight to the run it is killed in.
    bench = bench_file(seeds=(0,), train_steps=120, set={"train": {"checkpoint_every": 10, "eval_every": 20},
                                                         "pretrain": {"steps": 0}})
    reference = tmp_path / "reference"
    assert cli("bench", "-c", bench, "--adapters", "dann", "--out", reference)[0] == 0

    out = tmp_path / "killed"
    run = out / "synthetic-synthetic/dann/seed0"

    def past_a_checkpoint() -> bool:
        rows = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
        return any(json.loads(r)["step"] >= 20 for r in rows)

    interrupt_bench(bench, out, past_a_checkpoint, signal.SIGKILL, "--adapters", "dann")
    assert not (run / "done").exists()
    assert "dann seed 0: to resume" in cli("bench", "-c", bench, "--adapters", "dann", "--out", out, "--dry-run")[1]
    code, stdout, err = cli("bench", "-c", bench, "--adapters", "dann", "--out", out)
    assert code == 0, err
    assert "dann seed 0: resumed" in stdout
    assert without_timing(read_rows(out)) == without_timing(read_rows(reference))


def _workers_of(out: Path) -> list[int]:
    """Pids of the `da.bench.worker` processes writing into ``out`` (Linux /proc)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"da.bench.worker" in args and str(out).encode() in args:
            pids.append(int(cmdline.parent.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads worker processes from /proc")
def test_sigterm_to_a_parallel_bench_stops_its_workers_each_with_a_checkpoint(cli, bench_file, tmp_path):
    # No pretraining runs (pretrain.steps 0): the two adapter runs start at once, one worker start-up each.
    bench = bench_file(seeds=(0, 1), train_steps=400, set={"train": {"checkpoint_every": 10, "eval_every": 100},
                                                           "pretrain": {"steps": 0}})
    out = tmp_path / "stopped"
    runs = [out / f"synthetic-synthetic/dann/seed{s}" for s in (0, 1)]
    # SIGTERM to the parent alone, as a scheduler or `timeout` would, once both adapter runs are under way.
    code, stdout, err = interrupt_bench(bench, out, lambda: all((run / "checkpoint.pt").exists() for run in runs),
                                        signal.SIGTERM, "--adapters", "dann", "--jobs", "2")
    assert code == 2
    # Each run's progress line says it stopped (and why), not that it failed.
    assert "dann seed 0: stopped: " in stdout and "dann seed 1: stopped: " in stdout and "FAILED" not in stdout
    assert "stopped on SIGTERM" in one_line_error(err) and "rerun the same da bench command" in err
    assert _workers_of(out) == []  # no worker left running on its own
    # Each run saved a checkpoint on its way out, so the rerun resumes both.
    listing = cli("bench", "-c", bench, "--adapters", "dann", "--out", out, "--dry-run")[1]
    assert "dann seed 0: to resume" in listing and "dann seed 1: to resume" in listing


def test_narrowing_flags_and_bad_benchmarks_get_one_line_errors(cli, bench_file, tmp_path):
    bench = bench_file()
    code, _, err = cli("bench", "-c", bench, "--adapters", "dann,mcd", "--out", tmp_path / "o")
    assert code == 2 and "mcd not in this benchmark; it has: dann, source_only" in one_line_error(err)
    code, _, err = cli("bench", "-c", bench, "--seeds", "0,x", "--out", tmp_path / "o")
    assert code == 2 and "--seeds must be comma-separated integers" in one_line_error(err)
    code, _, err = cli("bench", "-c", bench, "--directions", "mnist", "--out", tmp_path / "o")
    assert code == 2 and "must look like source->target" in one_line_error(err)
    code, _, err = cli("bench", "-c", bench, "--directions", "usps-", "--out", tmp_path / "o")  # `usps->mnist` unquoted
    assert code == 2 and "quote it, --directions 'usps->mnist'" in one_line_error(err)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"adapters": {"dann": "tiny.yaml"}, "seed": [0]}))
    code, _, err = cli("bench", "-c", bad)
    assert code == 2 and "unknown key 'seed'; did you mean seeds?" in one_line_error(err)
    bad.write_text(yaml.safe_dump({"adapters": {"dann": "tiny.yaml"}, "set": {"train": {"stepz": 3}}}))
    code, _, err = cli("bench", "-c", bad)
    assert code == 2 and "benchmark adapter dann" in one_line_error(err) and "train.stepz" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # among the longest of the default suite (kept for CI's slow pass)
def test_a_folder_holding_a_run_with_another_config_is_not_overwritten(cli, bench_file, tmp_path):
    out = tmp_path / "out"
    assert cli("bench", "-c", bench_file(seeds=(0,)), "--adapters", "dann", "--out", out)[0] == 0
    config = out / "synthetic-synthetic/dann/seed0/config.yaml"
    kept = config.read_text()
    code, stdout, err = cli("bench", "-c", bench_file(seeds=(0,), train_steps=9), "--adapters", "dann", "--out", out)
    assert code == 2 and "FAILED" in stdout and "different config" in stdout
    assert "1 of 2 runs failed" in one_line_error(err)  # its shared pretraining run is unchanged: skipped
    assert config.read_text() == kept


@pytest.mark.slow  # among the longest of the default suite (kept for CI's slow pass)
def test_spelling_out_an_adapter_default_keeps_the_finished_runs(cli, bench_file, tmp_path):
    """``gamma: 10.0`` is dann's default: a benchmark file that now spells it out is the same config."""
    out = tmp_path / "out"
    assert cli("bench", "-c", bench_file(seeds=(0,)), "--adapters", "dann", "--out", out)[0] == 0
    spelt = bench_file(seeds=(0,), set={"adapter": {"gamma": 10.0}})
    code, stdout, err = cli("bench", "-c", spelt, "--adapters", "dann", "--out", out)
    assert code == 0 and stdout.count("skipped") == 2, err
    code, stdout, _ = cli("bench", "-c", bench_file(seeds=(0,), set={"adapter": {"gamma": 5.0}}), "--adapters", "dann", "--out", out)
    assert code == 2 and "different config" in stdout


def test_a_moved_benchmark_folder_still_resumes(cli, bench_file, tmp_path):
    """Run configs hold the pretraining checkpoint's absolute path; a renamed folder's runs are
    still the same runs: skipped when done, not refused as made with another config."""
    out = tmp_path / "out"
    assert cli("bench", "-c", bench_file(seeds=(0,)), "--adapters", "dann", "--out", out)[0] == 0
    moved = tmp_path / "renamed"
    out.rename(moved)
    code, stdout, err = cli("bench", "-c", bench_file(seeds=(0,)), "--adapters", "dann", "--out", moved)
    assert code == 0, err
    assert stdout.count("skipped") == 2 and "finished" not in stdout


@pytest.mark.slow
def test_ray_launcher_gives_the_same_results_as_the_local_one(cli, bench_file, tmp_path):
    pytest.importorskip("ray")
    bench = bench_file(seeds=(0, 1), set={"pretrain": {"steps": 0}})  # one wave: the two dann runs side by side
    # Both launchers two runs at a time, so each run gets the same number of threads (one on 2 cores): a
    # run's float sums, and so a validator's pick between two near-equal scores, then agree.
    assert cli("bench", "-c", bench, "--adapters", "dann", "--out", tmp_path / "local", "--jobs", "2")[0] == 0
    code, stdout, err = cli("bench", "-c", bench, "--adapters", "dann", "--out", tmp_path / "ray",
                            "--launcher", "ray", "--jobs", "2")
    assert code == 0, err
    assert stdout.count("finished") == 2  # dann for 2 seeds, no pretraining runs
    ray, local = read_rows(tmp_path / "ray"), read_rows(tmp_path / "local")
    # Validator scores are sums over thousands of values; another process may add them up in another order.
    assert [float(r["score"] or 0) for r in ray] == pytest.approx([float(r["score"] or 0) for r in local], abs=1e-5)
    drop_score = lambda rows: [{k: v for k, v in r.items() if k != "score"} for r in without_timing(rows)]
    assert drop_score(ray) == drop_score(local)
    # The local Ray's workers run at this process's priority, not Ray's default niceness 15.
    import ray

    def niceness() -> int:
        return os.nice(0)

    assert ray.get(ray.remote(niceness).remote()) == os.nice(0)
    # Runs that ask for GPUs this Ray does not have would never start: one line instead of a wait.
    code, _, err = cli("bench", "-c", bench, "--adapters", "dann", "--out", tmp_path / "gpus",
                       "--launcher", "ray", "--gpus-per-run", "1")
    assert code == 2 and one_line_error(err) and "has 0 GPUs" in err


@pytest.mark.slow  # two torchrun launches of 2 ranks: about 20 s
def test_each_run_of_a_sweep_can_be_one_ddp_run_over_several_processes(cli, bench_file, tmp_path):
    bench = bench_file(seeds=(0,), set={"pretrain": {"steps": 0}})
    out = tmp_path / "out"
    code, stdout, err = cli("bench", "-c", bench, "--adapters", "dann", "--out", out, "--nproc-per-run", "2")
    assert code == 0, err
    (run_dir,) = [p.parent for p in out.rglob("summary.json")]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 2 * summary["batch_size"]
    assert (run_dir / "done").exists() and len(read_rows(out)) > 0
    # Rerun: rank 0 finds the run done and tells the other rank; nothing trains again.
    code, stdout, err = cli("bench", "-c", bench, "--adapters", "dann", "--out", out, "--nproc-per-run", "2")
    assert code == 0 and "skipped" in stdout, err


def test_gpus_per_run_outside_ray_is_one_line(cli, bench_file, tmp_path):
    code, _, err = cli("bench", "-c", bench_file(), "--out", tmp_path / "o", "--gpus-per-run", "2")
    assert code == 2 and one_line_error(err) and "--launcher ray" in err


def test_a_narrowed_benchmark_plans_each_run_as_the_whole_one_does(bench_file):
    from da.bench.plan import load_bench_config, narrow, plan_runs

    whole = load_bench_config(bench_file())
    alone = plan_runs(narrow(whole, None, "dann", None), within=whole)
    full = {r.key: r for r in plan_runs(whole)}
    assert [r.adapter for r in alone] == ["pretrain", "pretrain", "dann", "dann"]
    for run in alone:  # same pretraining run, same config, as in the whole benchmark
        assert run.after == full[run.key].after and run.config == full[run.key].config


def test_each_wave_starts_its_longest_runs_first(bench_file):
    """Pretraining first; then the longest runs, so that no core idles at the end on a long run started last."""
    from da.bench.launch import waves
    from da.bench.plan import load_bench_config, plan_runs

    bench = load_bench_config(bench_file(extra_adapters={"long": {"config": "tiny.yaml", "set": {"train": {"steps": 60}}}}))
    pretraining, adapters = waves(plan_runs(bench))
    assert {r.adapter for r in pretraining} == {"pretrain"}
    planned = [r.key for r in plan_runs(bench) if r.adapter != "pretrain"]
    longest = [k for k in planned if "/long/" in k]
    assert len(longest) == 2 and [r.key for r in adapters] == longest + [k for k in planned if k not in longest]


def test_flags_that_add_seeds_or_directions_widen_what_the_reports_cover(bench_file):
    """`--directions usps->mnist` on a file listing only mnist->usps: its runs join the reports."""
    from da.bench.plan import load_bench_config, narrow, plan_runs, widen

    whole = load_bench_config(bench_file())
    flagged = narrow(whole, "1,2", "dann", "synthetic->synthetic,shapes->shapes")
    wide = widen(whole, flagged)
    assert wide.seeds == [0, 1, 2] and wide.directions == ["synthetic->synthetic", "shapes->shapes"]
    assert set(wide.adapters) == {"source_only", "dann"}
    covered = {r.key for r in plan_runs(wide)}
    assert {r.key for r in plan_runs(flagged, within=wide)} <= covered
    assert {r.key for r in plan_runs(whole)} < covered


def test_a_grid_entry_stands_for_one_setting_per_combination(bench_file, tmp_path):
    from da.bench.plan import load_bench_config, narrow, plan_runs

    path = bench_file(adapters={"dann": {"config": "tiny.yaml", "set": {"train.lr": 0.02},
                                         "grid": {"adapter.weight": [0.5, 2.0], "train.steps": [4, 6]}},
                                "source_only": {"config": "tiny.yaml", "set": {"adapter": {"name": "source_only"}}}})
    bench = load_bench_config(path)
    labels = ["dann@weight=0.5+steps=4", "dann@weight=0.5+steps=6", "dann@weight=2+steps=4", "dann@weight=2+steps=6"]
    assert list(bench.adapters) == [*labels, "source_only"]
    runs = {r.key: r for r in plan_runs(bench)}
    config = runs["synthetic-synthetic/dann@weight=2+steps=4/seed1"].config
    assert (config["adapter"]["weight"], config["train"]["steps"], config["train"]["lr"]) == (2.0, 4, 0.02)
    # Every setting of a seed starts from the same pretraining run.
    assert len({r.after for r in runs.values() if r.seed == 1 and r.adapter != "pretrain"}) == 1
    assert list(narrow(bench, None, "dann", None).adapters) == labels  # the entry's label: the whole grid
    assert list(narrow(bench, None, labels[1], None).adapters) == [labels[1]]


@pytest.mark.parametrize("grid, message", [
    ({"adapter.weight": 0.5}, "adapters.dann.grid.adapter.weight must be a non-empty list of values"),
    ({"adapter.weight": []}, "adapters.dann.grid.adapter.weight must be a non-empty list of values"),
    ([0.5, 1], "adapters.dann.grid must map config keys to lists of values"),
    ({"train.lr": [0.1]}, "adapters.dann sets train.lr in both set and grid"),
    ({"adapter.weight": [1, 1.0]}, "gives two settings the label 'dann@weight=1'"),
])
def test_a_bad_grid_gets_a_one_line_error(cli, bench_file, tmp_path, grid, message):
    path = bench_file(adapters={"dann": {"config": "tiny.yaml", "set": {"train.lr": 0.02}, "grid": grid}})
    code, _, err = cli("bench", "-c", path, "--out", tmp_path / "o")
    assert code == 2 and message in one_line_error(err)
    assert not (tmp_path / "o").exists()


def test_a_grid_benchmark_reports_the_settings_each_rule_picks(cli, bench_file, tmp_path):
    from da.bench.report import pick_settings

    path = bench_file(adapters={"dann": {"config": "tiny.yaml", "grid": {"adapter.weight": [0.1, 3.0]}}})
    out = tmp_path / "out"
    code, stdout, err = cli("bench", "-c", path, "--out", out)
    assert code == 0, err
    rows = read_rows(out)
    assert {r["adapter"] for r in rows} == {"dann@weight=0.1", "dann@weight=3"}
    assert {r["family"] for r in rows} == {"dann"}
    md = (out / "results.md").read_text()
    heading = "### synthetic->synthetic: dann (2 settings)"
    for selection in ("source_val", "im", "entropy", "oracle"):
        picked = pick_settings(rows, selection)  # read back from the csv, scores as text
        assert set(picked) == {"0", "1"}
        for seed, chosen in picked.items():  # the pick is the setting with the higher score
            rival = next(r for r in rows if r["selection"] == selection and r["seed"] == seed
                         and r["adapter"] != chosen["adapter"])
            assert float(chosen["score"]) >= float(rival["score"])
        line = next(l for l in md.split(heading, 1)[1].splitlines() if l.startswith(f"| {selection}"))
        assert f"0: {picked['0']['adapter'].split('@')[1]}, 1: {picked['1']['adapter'].split('@')[1]}" in line


def test_the_grid_flag_sweeps_the_adapters_named_without_editing_the_file(cli, bench_file, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = cli("bench", "-c", bench_file(seeds=(0,)), "--adapters", "dann", "--out", out,
                            "--grid", "adapter.weight=0.5,2", "--grid", "train.steps=4")
    assert code == 0, err
    assert {r["adapter"] for r in read_rows(out)} == {"dann@weight=0.5+steps=4", "dann@weight=2+steps=4"}
    config = yaml.safe_load((out / "synthetic-synthetic/dann@weight=2+steps=4/seed0/config.yaml").read_text())
    assert (config["adapter"]["weight"], config["train"]["steps"]) == (2, 4)
    code, _, err = cli("bench", "-c", bench_file(), "--grid", "adapter.weight", "--out", tmp_path / "o")
    assert code == 2 and "--grid must look like KEY=V1,V2,..." in one_line_error(err)
    code, _, err = cli("bench", "-c", bench_file(), "--grid", "adapter.weight=1", "--adapters", "dann@weight=2",
                       "--out", tmp_path / "o")
    assert code == 2 and "dann@weight=2 is not one; with --grid, --adapters takes entries of" in one_line_error(err)
    assert not (tmp_path / "o").exists()


def test_dry_run_lists_each_run_as_done_to_run_or_holding_another_config(cli, bench_file, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = cli("bench", "-c", bench_file(seeds=(0,)), "--out", out, "--dry-run")
    assert code == 0, err
    assert stdout.splitlines()[-1].endswith("3 runs in " + str(out) + ": 3 to run")  # pretraining, 2 adapters
    assert not out.exists()
    assert cli("bench", "-c", bench_file(seeds=(0,)), "--adapters", "dann", "--out", out)[0] == 0
    code, stdout, _ = cli("bench", "-c", bench_file(seeds=(0,)), "--out", out, "--dry-run")
    assert "synthetic->synthetic dann seed 0: done" in stdout and "source_only seed 0: to run" in stdout
    assert stdout.splitlines()[-1].endswith("2 done, 1 to run")
    code, stdout, _ = cli("bench", "-c", bench_file(seeds=(0,), train_steps=9), "--out", out, "--dry-run")
    assert "dann seed 0: holds another config" in stdout

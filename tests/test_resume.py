"""Runs that survive: exact resume after SIGKILL or SIGTERM, same seed twice, atomic outputs, eval."""
from __future__ import annotations

import json
import os
import random
import signal

import pytest
import yaml

from conftest import KILL_CONFIG, kill_and_resume, one_line_error, results, tiny_config
from da.checkpoint import load_checkpoint
from da.cli import main
from da.composition import build_config, train
from da.errors import DAError

# Fine-tuning strategies on top: blocks unfreezing every 40 steps with their own lrs, early stopping.
TRANSFER_CONFIG = tiny_config(
    data={"target_labels_per_class": 2},
    pretrain={"steps": 30, "batch_size": 16},
    train={"steps": 120, "batch_size": 16, "eval_every": 10, "log_every": 10, "checkpoint_every": 7,
           "unfreeze": {"every": 40}, "lr_mults": {"conv1": 0.3},
           "early_stopping": {"validator": "source_val", "patience": 100}},
)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(KILL_CONFIG))
    assert main(["train", "-c", str(tmp / "cfg.yaml"), "--out", str(tmp / "run"), "-q"]) == 0
    return tmp / "run"


def kill_point(low: int, high: int) -> tuple[int, str]:
    """A random adaptation step in [low, high] to kill at, from a seed that is printed (and taken
    from $DA_TEST_KILL_SEED when set), so that a failure at one kill point can be rerun."""
    seed = int(os.environ.get("DA_TEST_KILL_SEED") or random.randrange(10**6))
    step = random.Random(seed).randint(low, high)
    how = f"killed after adaptation step {step} (DA_TEST_KILL_SEED={seed} reproduces it)"
    print(how)
    return step, how


@pytest.mark.slow  # among the longest of the default suite (kept for CI's slow pass)
def test_sigkill_then_resume_ends_exactly_like_an_uninterrupted_run(tmp_path, uninterrupted):
    reference = json.loads((uninterrupted / "summary.json").read_text())
    step, how = kill_point(7, 90)
    summary = kill_and_resume(tmp_path, (1, step), signal.SIGKILL)
    assert results(summary) == results(reference), how
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    reference_rows = [json.loads(line) for line in (uninterrupted / "metrics.jsonl").read_text().splitlines()]
    assert rows == reference_rows, how


def test_sigterm_checkpoints_and_stops_and_resume_matches(tmp_path, uninterrupted):
    reference = json.loads((uninterrupted / "summary.json").read_text())
    summary = kill_and_resume(tmp_path, (0, 7), signal.SIGTERM)
    assert results(summary) == results(reference)


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [(0, 21)])  # mid-pretraining (mid-adaptation: the test above)
def test_sigkill_mid_pretraining_resumes_exactly(kill_after, tmp_path, uninterrupted):
    reference = json.loads((uninterrupted / "summary.json").read_text())
    assert results(kill_and_resume(tmp_path, kill_after, signal.SIGKILL)) == results(reference)


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [(1, 77)])  # after the second unfreezing (earlier ones: test_transfer)
def test_sigkill_with_unfreezing_and_early_stopping_resumes_exactly(kill_after, tmp_path):
    (tmp_path / "ref").mkdir()
    reference = train(build_config({**TRANSFER_CONFIG, "name": "cfg"}), tmp_path / "ref", show_progress=False)
    (tmp_path / "cut").mkdir()
    summary = kill_and_resume(tmp_path / "cut", kill_after, signal.SIGKILL, TRANSFER_CONFIG)
    assert results(summary) == results(reference) and "early_stopping" in summary


def test_same_config_and_seed_twice_give_identical_results(tmp_path):
    config = build_config(tiny_config(train={"steps": 12, "eval_every": 6}))
    summaries = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        summaries.append(results(train(config, tmp_path / name, show_progress=False)))
    assert summaries[0] == summaries[1]


def test_da_eval_recomputes_the_summary(tmp_path, uninterrupted, cli):
    code, out, err = cli("eval", uninterrupted)
    assert code == 0, err
    assert "matches summary.json" in out
    summary = json.loads((uninterrupted / "summary.json").read_text())
    assert json.loads(out.splitlines()[0])["target_test_acc"] == summary["target_test_acc"]


def test_truncated_or_foreign_checkpoint_gets_a_clear_error(tmp_path, uninterrupted, cli):
    data = (uninterrupted / "checkpoint.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    code, _, err = cli("eval", uninterrupted, "--checkpoint", tmp_path / "cut.pt")
    assert code == 2 and "truncated or not a da checkpoint" in one_line_error(err)
    import torch

    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    code, _, err = cli("eval", uninterrupted, "--checkpoint", tmp_path / "foreign.pt")
    assert code == 2 and "is not a da checkpoint" in one_line_error(err)


def test_resuming_a_finished_run_is_refused(uninterrupted, cli):
    code, _, err = cli("train", "--resume", uninterrupted)
    assert code == 2 and "already finished" in one_line_error(err)


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import torch

    config = build_config(tiny_config(pretrain={"steps": 0}, train={"steps": 6, "checkpoint_every": 2, "eval_every": 2}))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    real_save, calls = torch.save, {"n": 0}

    def save_until_full(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save_until_full)
    with pytest.raises(DAError, match="No space left on device.*previous checkpoint is kept"):
        train(config, run_dir, show_progress=False)
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 2
    assert not list(run_dir.glob(".*.tmp"))


def test_unwritable_output_folder_gets_a_clear_error(tmp_path, monkeypatch, write_config, cli):
    from pathlib import Path

    def refuse(self, *a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)
    code, _, err = cli("train", "-c", write_config(tiny_config()), "--out", tmp_path / "ro" / "run", "-q")
    assert code == 2 and "cannot create output folder" in one_line_error(err)


def test_truncated_summary_gets_a_clear_error_and_is_left_alone(tmp_path, uninterrupted, cli):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(uninterrupted, run)
    text = (run / "summary.json").read_text()
    (run / "summary.json").write_text(text[: len(text) // 2])
    code, _, err = cli("eval", run)
    assert code == 2 and "truncated or not JSON" in err.strip().splitlines()[-1]
    assert (run / "summary.json").read_text() == text[: len(text) // 2]

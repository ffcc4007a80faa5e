"""One run over two processes (torch.distributed, gloo on CPU, started by ``da train --nproc 2``):
the same weights as one process over the same images, rank 0 alone writes, exact resume after SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from conftest import ROOT, tiny_config
from da.checkpoint import load_checkpoint
from da.composition import build_config, train
from da.train import TIMING_FIELDS

# Plain LeNet (no batch norm), the extractor frozen so that dropout is off (dropout masks are drawn
# per rank, so they could not match one process's), source_only: the head learns from the source.
EQUAL = {**tiny_config(pretrain={"steps": 0},
                    train={"steps": 8, "batch_size": 32, "extractor": "freeze", "eval_every": 4, "checkpoint_every": 4,
                           "lr": 0.05}), "adapter": {"name": "source_only"}}


def launch(tmp_path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "da", "train", "-q", "--nproc", "2", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


@pytest.mark.slow  # among the longest of the default suite (kept for CI's slow pass)
def test_two_ranks_of_32_end_with_the_weights_of_one_process_of_64(tmp_path):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(EQUAL))
    code, out, err = finish(launch(tmp_path, "-c", "cfg.yaml", "--out", "ranks"))
    assert code == 0, err
    single = build_config({**EQUAL, "train": {**EQUAL["train"], "batch_size": 64}})
    (tmp_path / "one").mkdir()
    one = train(single, tmp_path / "one", show_progress=False)
    two = load_checkpoint(tmp_path / "ranks" / "checkpoint.pt")
    ref = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    for key in ref["model"]["head"]:
        assert torch.allclose(two["model"]["head"][key], ref["model"]["head"][key], atol=1e-5), key
    assert not torch.equal(ref["model"]["head"]["weight"], train_start_head(tmp_path))  # the head did train
    import json

    summary = json.loads((tmp_path / "ranks" / "summary.json").read_text())
    assert (summary["world_size"], summary["global_batch_size"], summary["batch_size"]) == (2, 64, 32)
    assert summary["target_test_acc"] == pytest.approx(one["target_test_acc"], abs=1 / 128)
    # Rank 0 alone wrote: one run folder, one events file, one summary; stdout names the folder once.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml", "one", "ranks"]
    assert len(list((tmp_path / "ranks" / "tb").iterdir())) == 1
    assert out.count("run folder:") == 1 and out.count("target_test_acc=") == 1


def train_start_head(tmp_path):
    """The head's weights before training (the seed's initialisation), from a 0-step run."""
    cfg = build_config({**EQUAL, "train": {**EQUAL["train"], "steps": 0}})
    (tmp_path / "zero").mkdir()
    train(cfg, tmp_path / "zero", show_progress=False)
    head = load_checkpoint(tmp_path / "zero" / "checkpoint.pt")["model"]["head"]["weight"]
    import shutil

    shutil.rmtree(tmp_path / "zero")
    return head


@pytest.mark.slow
def test_dann_on_two_ranks_resumes_exactly_after_sigterm(tmp_path):
    cfg = tiny_config(train={"steps": 150, "batch_size": 16, "eval_every": 50, "log_every": 10, "checkpoint_every": 10})
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    stopped = launch(tmp_path, "-c", "cfg.yaml", "--out", "stopped")
    # SIGTERM to the launcher once the run is adapting (its first adaptation checkpoint exists).
    deadline = time.time() + 240
    while time.time() < deadline and stopped.poll() is None:
        try:
            if load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["stage"] == "adapt":
                break
        except Exception:
            pass
        time.sleep(0.1)
    os.killpg(stopped.pid, signal.SIGTERM)
    code, _, err = finish(stopped)
    assert code == 2 and "stopped by SIGTERM" in err and "Traceback" not in err, err
    assert not (tmp_path / "stopped" / "summary.json").exists()
    code, _, err = finish(launch(tmp_path, "--resume", "stopped"))
    assert code == 0, err
    code, _, err = finish(launch(tmp_path, "-c", "cfg.yaml", "--out", "ref"))
    assert code == 0, err
    import json

    strip = lambda p: {k: v for k, v in json.loads(p.read_text()).items() if k not in TIMING_FIELDS}
    assert strip(tmp_path / "stopped" / "summary.json") == strip(tmp_path / "ref" / "summary.json")


def _gather_worker(rank: int, init_file: str, results) -> None:
    import torch.distributed as dist

    from da.train.distributed import Dist, gather

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        here = Dist(rank, 2)
        mine = torch.full((3, 2), float(rank + 1), requires_grad=True)
        (everything,) = gather(here, mine)
        weights = torch.arange(12, dtype=torch.float32).reshape(6, 2)
        (everything * weights).sum().backward()
        results[rank] = (everything.detach(), mine.grad)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gather_gives_every_rank_the_global_batch_and_each_rank_the_gradient_of_its_rows(tmp_path):
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_gather_worker, args=(str(tmp_path / "init"), results), nprocs=2)
        results = dict(results)
    weights = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    expected = torch.cat([torch.full((3, 2), 1.0), torch.full((3, 2), 2.0)])
    for rank in (0, 1):
        everything, grad = results[rank]
        assert torch.equal(everything, expected)
        # Both ranks' losses reach each rank's rows: the gradient is the sum of the two ranks' weights
        # for those rows (all_gather's backward reduces), i.e. 2x that rank's slice of the weights.
        assert torch.equal(grad, 2 * weights[3 * rank : 3 * rank + 3])

"""Shared fixtures and helpers: a tiny synthetic config, the CLI run in-process, the real-data switch,
MNIST's class counts, TensorBoard tags of a run, and killing a run to resume it."""
from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from da.cli import main
from da.validators import CLASSIC

ROOT = Path(__file__).resolve().parents[1]

# Caches (decoded USPS, generated domains under a read-only root) go to a folder of this session,
# never to the user's cache or a shared data root.
os.environ["DA_CACHE_DIR"] = tempfile.mkdtemp(prefix="da-test-cache-")
atexit.register(shutil.rmtree, os.environ["DA_CACHE_DIR"], True)


def real_data_root() -> Path | None:
    root = os.environ.get("DA_DATA_ROOT")
    if root and (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        return Path(root)
    return None


needs_data = pytest.mark.skipif(real_data_root() is None, reason="real MNIST/USPS not under $DA_DATA_ROOT")

#: Images per class of MNIST train and test (torchvision's files).
MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def open_set_source(name: str, source: dict) -> dict:
    """``source`` (a data spec) with one class left out when adapter ``name`` is meant only for the open
    settings (osbp, ovanet): the target's last class is then unknown, the setting such an adapter needs."""
    from da.registry import ADAPTERS

    if "closed" in getattr(ADAPTERS.get(name), "settings", ("closed",)):
        return source
    if "folder" in source:
        return {**source, "classes": ["a", "b"]}
    return {"name": source["name"] if isinstance(source, dict) else source, "classes": [0, 1, 2]}


def tiny_config(**sections) -> dict:
    """A config for a run of a few steps on the synthetic pair; ``sections`` are merged in."""
    cfg = {
        "seed": 0,
        "device": "cpu",
        "data": {"source": "synthetic", "target": "synthetic", "source_val_size": 64},
        "adapter": {"name": "dann", "hidden": 32},
        "pretrain": {"steps": 4, "batch_size": 16},
        # The five classic validators keep the suite's hundreds of tiny runs fast (all 14 cost about 40 %
        # more there); tests/test_validator_catalog.py runs the default, every one.
        "train": {"steps": 6, "batch_size": 16, "eval_every": 3, "log_every": 2, "checkpoint_every": 3,
                  "validators": list(CLASSIC)},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


@pytest.fixture
def write_config(tmp_path):
    def write(cfg: dict | str, name: str = "cfg.yaml") -> Path:
        path = tmp_path / name
        path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
        return path

    return write


@pytest.fixture
def cli(capsys):
    """Run ``da ARGS`` in-process; return (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def one_line_error(err: str) -> str:
    """The single error line a bad input must produce (no traceback, no usage dump)."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


def stop_at(monkeypatch, step: int, stage: str = "adapt") -> None:
    """Ask the loop to checkpoint and stop after ``step`` as SIGTERM would (deterministic, in-process)."""
    from da.train import Run

    real = Run.check

    def check(self, loss, current, at):
        real(self, loss, current, at)
        if current.name == stage and at == step:
            self.stop_signal = "TEST"

    monkeypatch.setattr(Run, "check", check)


def stopped_then_resumed(config, run_dir: Path, monkeypatch, step: int) -> dict:
    """Train ``config`` into ``run_dir``, stopped (checkpointed, as on SIGTERM) after adaptation
    step ``step``, then resumed to the end: the resumed run's summary without its timings."""
    from da.checkpoint import load_checkpoint
    from da.composition import train
    from da.errors import Interrupted
    from da.train import TIMING_FIELDS

    run_dir.mkdir()
    stop_at(monkeypatch, step)
    with pytest.raises(Interrupted):
        train(config, run_dir, show_progress=False)
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == step
    monkeypatch.undo()
    resumed = train(config, run_dir, resume=True, show_progress=False)
    return {k: v for k, v in resumed.items() if k not in TIMING_FIELDS}


def tb_tags(run_dir: Path) -> tuple[set[str], bool]:
    """The scalar tags of a run's TensorBoard events, and whether its hparams were written."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return set(acc.Tags()["scalars"]), "_hparams_/experiment" in acc.PluginTagToContent("hparams")


# ---------------------------------------------------------------- killing a run and resuming it

#: Two labelled target images per class: the labelled-target sampler is checkpointed and resumed too.
KILL_CONFIG = tiny_config(
    data={"target_labels_per_class": 2},
    pretrain={"steps": 30, "batch_size": 16},
    train={"steps": 120, "batch_size": 16, "eval_every": 30, "log_every": 10, "checkpoint_every": 7},
)


def results(summary: dict) -> dict:
    """A summary without its timing fields: what must match between a resumed run and an uninterrupted one."""
    from da.train import TIMING_FIELDS

    return {k: v for k, v in summary.items() if k not in TIMING_FIELDS}


def start_cli(args: list, cwd: Path) -> subprocess.Popen:
    """``da ARGS`` in a process of its own (one that can be killed)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "da.cli", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def checkpoint_position(path: Path) -> tuple[int, int] | None:
    """(stage index, step) of a checkpoint: 0 pretraining, 1 adaptation; None while there is none."""
    from da.checkpoint import load_checkpoint
    from da.errors import DAError

    try:
        state = load_checkpoint(path)
    except DAError:
        return None
    return ({"pretrain": 0, "adapt": 1}[state["stage"]], state["step"])


def kill_and_resume(tmp_path: Path, kill_after: tuple[int, int], sig: int, config: dict = KILL_CONFIG) -> dict:
    """Train ``config`` in a process, send it ``sig`` once its checkpoint reaches ``kill_after``
    ((stage index, step)), then resume it in this process; the resumed run's summary."""
    import signal

    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    proc = start_cli(["train", "-c", tmp_path / "cfg.yaml", "--out", run_dir, "-q"], tmp_path)
    while proc.poll() is None:
        position = checkpoint_position(run_dir / "checkpoint.pt")
        if position is not None and position >= kill_after:
            proc.send_signal(sig)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=300)
    assert not (run_dir / "summary.json").exists(), "the run finished before the kill: lengthen its config"
    if sig == signal.SIGTERM:
        assert proc.returncode == 2 and "stopped by SIGTERM" in one_line_error(err)
    # Only the killed run needs a process of its own; the resume runs in this one.
    assert main(["train", "--resume", str(run_dir), "-q"]) == 0
    return json.loads((run_dir / "summary.json").read_text())

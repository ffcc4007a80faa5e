"""Shared fixtures: a tiny synthetic config, the CLI run in-process, and the real-data switch."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from da.cli import main

ROOT = Path(__file__).resolve().parents[1]


def real_data_root() -> Path | None:
    root = os.environ.get("DA_DATA_ROOT")
    if root and (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        return Path(root)
    return None


needs_data = pytest.mark.skipif(real_data_root() is None, reason="real MNIST/USPS not under $DA_DATA_ROOT")


def tiny_config(**sections) -> dict:
    """A config for a run of a few steps on the synthetic pair; ``sections`` are merged in."""
    cfg = {
        "seed": 0,
        "device": "cpu",
        "data": {"source": "synthetic", "target": "synthetic", "source_val_size": 64},
        "adapter": {"name": "dann", "hidden": 32},
        "pretrain": {"steps": 4, "batch_size": 16},
        "train": {"steps": 6, "batch_size": 16, "eval_every": 3, "log_every": 2, "checkpoint_every": 3},
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
    from da.errors import Interrupted
    from da.train import TIMING_FIELDS, train

    run_dir.mkdir()
    stop_at(monkeypatch, step)
    with pytest.raises(Interrupted):
        train(config, run_dir, show_progress=False)
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == step
    monkeypatch.undo()
    resumed = train(config, run_dir, resume=True, show_progress=False)
    return {k: v for k, v in resumed.items() if k not in TIMING_FIELDS}

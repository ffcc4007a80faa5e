"""Helpers the method tests share: a run stopped inside a named stage and resumed, and the step driver."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import stop_at


def resumed_equals_uninterrupted(config: dict, tmp_path: Path, monkeypatch, stage: str, step: int) -> None:
    """A run stopped after ``stage``'s step ``step`` and resumed ends exactly as an uninterrupted one."""
    from da.checkpoint import load_checkpoint
    from da.composition import build_config, train
    from da.errors import Interrupted
    from da.train import TIMING_FIELDS

    cfg = build_config(config)
    whole = train(cfg, _fresh(tmp_path / "whole"), show_progress=False)
    stopped = _fresh(tmp_path / "stopped")
    stop_at(monkeypatch, step, stage)
    with pytest.raises(Interrupted):
        train(build_config(config), stopped, show_progress=False)
    state = load_checkpoint(stopped / "checkpoint.pt")
    assert (state["stage"], state["step"]) == (stage, step)
    monkeypatch.undo()
    resumed = train(build_config(config), stopped, resume=True, show_progress=False)
    drop = lambda s: {k: v for k, v in s.items() if k not in TIMING_FIELDS}
    assert drop(resumed) == drop(whole)
    a, b = load_checkpoint(tmp_path / "whole" / "checkpoint.pt"), load_checkpoint(stopped / "checkpoint.pt")
    for part in ("extractor", "head", "adapter", "encoder.target", "transform", "head_2"):
        assert (part in a) == (part in b), f"{part} is in one checkpoint only"
        for key, value in a.get(part, {}).items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs after resume"


def _fresh(path: Path) -> Path:
    path.mkdir()
    return path

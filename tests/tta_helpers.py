"""What the EATA and SAR tests share: a tiny network, logits of a chosen entropy, a stage driven on
it batch by batch as the loop's ``apply_updates`` drives it, and a run stopped mid-stream."""
from __future__ import annotations

import copy
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from da.models.test_time_norm import Affine, copy_state, use_test_statistics
from da.stages.base import ParamGroup
from da.train.precision import Precision
from da.train.skeleton import make_optimizer

CLASSES = 10


def tiny_net(norm: str = "bn", seed: int = 0, confidence: float = 1.0) -> nn.Sequential:
    """Conv, norm (batch or group), ReLU, linear head over 8x8 images; ``confidence`` scales the head."""
    torch.manual_seed(seed)
    layer = nn.BatchNorm2d(4) if norm == "bn" else nn.GroupNorm(2, 4)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), layer, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, CLASSES))
    with torch.no_grad():
        net[-1].weight.mul_(confidence)
    return net


def images(n: int, seed: int) -> Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def logits_with_entropy(entropy: float, classes: int = CLASSES, label: int = 0) -> Tensor:
    """Logits (one row) whose softmax has ``entropy`` nats: ``t`` on ``label``, 0 elsewhere (bisection on t)."""
    def h(t: float) -> float:
        z = math.exp(t) + classes - 1
        top, rest = math.exp(t) / z, 1 / z
        return -(top * math.log(top) + (classes - 1) * rest * math.log(rest))

    low, high = 0.0, 50.0  # h falls from ln C at t = 0
    assert h(high) < entropy < math.log(classes)
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if h(mid) > entropy else (low, mid)
    row = torch.zeros(1, classes)
    row[0, label] = (low + high) / 2
    return row


class FakeModel:
    """The ``run.model`` a test-time stage's ``restore`` reads: its parts by name."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def parts(self) -> dict[str, nn.Module]:
        return {"net": self.net}


def attach(stage: Any, net: nn.Module, lr: float | None = None) -> SimpleNamespace:
    """``stage`` predicting with ``net`` (batch norm on the test batch's statistics), its affine
    parameters alone trainable, its optimizer made as the loop makes it, the source kept: a context."""
    use_test_statistics(net)
    net.requires_grad_(False)
    affine = Affine([net])
    affine.requires_grad_(True)
    stage.forward = lambda run, x: net(x)
    stage.params = list(affine.parameters())
    settings = stage.settings(None)
    optimizer, _ = make_optimizer([ParamGroup("norm", affine)], settings.lr if lr is None else lr, settings)
    ctx = SimpleNamespace(run=SimpleNamespace(model=FakeModel(net)), optimizers={"main": optimizer})
    stage.source = {"model": {"net": copy_state(net)}, "optimizers": {"main": copy.deepcopy(optimizer.state_dict())},
                    "method": copy.deepcopy(stage.method_state())}
    return ctx


def drive(stage: Any, ctx: SimpleNamespace, x: Tensor, after_update: Any = None) -> tuple[Tensor, int]:
    """One batch through ``stage.adapt`` as ``apply_updates`` runs it: the logits and the updates applied.
    ``after_update(update)`` sees the weights after each update."""
    precision = Precision("fp32", torch.device("cpu"))
    updates = stage.adapt(ctx, x)
    count = 0
    while True:
        try:
            update = next(updates)
        except StopIteration as stop:
            return stop.value, count
        optimizer = ctx.optimizers[update.optimizer]
        optimizer.zero_grad(set_to_none=True)
        precision.backward(update.loss)
        (precision.perturb if update.perturb else precision.step)(optimizer)
        count += 1
        if after_update is not None:
            after_update(update)


def stream_config(stage: dict, backbone: str = "lenet_bn") -> dict:
    """Ten pretraining steps on the synthetic pair (some predictions pass the filters, not all), then
    ``stage`` on its 128 target test images."""
    return {"seed": 0, "device": "cpu", "data": {"source": "synthetic", "target": "synthetic", "source_val_size": 64},
            "model": {"backbone": backbone}, "pretrain": {"steps": 10, "batch_size": 16},
            "train": {"steps": 0, "log_every": 1, "checkpoint_every": 100}, "stages": ["pretrain", stage]}


def stopped_and_resumed(config: dict, tmp_path: Path, monkeypatch: Any, stage: str, step: int) -> tuple[dict, dict]:
    """The summaries (without timings) of ``config`` run whole, and run stopped after ``stage``'s
    ``step`` (as SIGTERM stops it: a checkpoint, then exit) and resumed; both runs' last models are
    the same, and differ from the model at the stop (the stream adapted after it)."""
    from da.checkpoint import load_checkpoint
    from da.composition import build_config, train
    from da.errors import Interrupted
    from da.stages.test_time import TestTimeStage
    from da.train import TIMING_FIELDS

    (tmp_path / "whole").mkdir()
    (tmp_path / "stopped").mkdir()
    whole = train(build_config(config), tmp_path / "whole", show_progress=False)

    def after_step(self: Any, ctx: Any, at: int) -> None:
        if ctx.name == stage and at == step:
            ctx.run.stop_signal = "TEST"

    monkeypatch.setattr(TestTimeStage, "after_step", after_step)
    with pytest.raises(Interrupted):
        train(build_config(config), tmp_path / "stopped", show_progress=False)
    at_stop = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")
    assert at_stop["step"] == step
    monkeypatch.undo()
    resumed = train(build_config(config), tmp_path / "stopped", resume=True, show_progress=False)
    ends = [load_checkpoint(tmp_path / run / "checkpoint.pt")["model"]["extractor"] for run in ("whole", "stopped")]
    assert all(torch.equal(v, ends[1][k]) for k, v in ends[0].items())
    assert not all(torch.equal(v, at_stop["model"]["extractor"][k]) for k, v in ends[0].items())
    drop = lambda s: {k: v for k, v in s.items() if k not in TIMING_FIELDS}
    return drop(whole), drop(resumed)

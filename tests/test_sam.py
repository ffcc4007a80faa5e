"""SAM (``da.train.sam``): the ascent step, the restore, the base step, the schedule and the state.

A hand-computed SAM step on a tiny least-squares problem is the reference; with ``DA_SAR_REPO`` set
to a checkout of github.com/mr-eggplant/SAR, the same inputs also go through that repository's
``sam.py`` (davda54/sam's SAM) and both must agree.
"""
from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from da.stages.base import OptimSettings, ParamGroup
from da.train.sam import SAM
from da.train.skeleton import make_optimizer

RHO, LR, MOMENTUM = 0.05, 0.1, 0.9


def problem() -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Linear(3, 2), torch.randn(8, 3), torch.randn(8, 2)


def loss_of(layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((layer(x) - y) ** 2).mean()


def gradients(layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss_of(layer, x, y), list(layer.parameters())))


def sam_step(optimizer: torch.optim.Optimizer, layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """One SAM update as the skeleton drives it: backward, first_step, backward, step."""
    for _ in range(2):
        optimizer.zero_grad()
        loss_of(layer, x, y).backward()
        if _ == 0:
            optimizer.first_step()
    optimizer.step()


def test_first_step_climbs_rho_along_the_normalised_gradient_and_step_restores_before_the_base_step():
    layer, x, y = problem()
    w0 = [p.detach().clone() for p in layer.parameters()]
    g0 = gradients(layer, x, y)
    norm = torch.sqrt(sum((g ** 2).sum() for g in g0))
    optimizer = SAM(torch.optim.SGD(layer.parameters(), lr=LR), RHO)
    optimizer.zero_grad()
    loss_of(layer, x, y).backward()
    optimizer.first_step()
    moved = [p.detach() - w for p, w in zip(layer.parameters(), w0)]
    assert torch.sqrt(sum((m ** 2).sum() for m in moved)).item() == pytest.approx(RHO, rel=1e-5)
    for m, g in zip(moved, g0):
        assert torch.allclose(m, RHO * g / (norm + 1e-12), rtol=1e-5, atol=1e-7)
    g_hat = gradients(layer, x, y)  # the gradient at w + e(w)
    optimizer.zero_grad()
    loss_of(layer, x, y).backward()
    optimizer.step()
    for p, w, g in zip(layer.parameters(), w0, g_hat):  # w - lr * g(w + e(w)): from w, not from w + e(w)
        assert torch.allclose(p.detach(), w - LR * g, rtol=1e-5, atol=1e-7)


def test_step_restores_the_weights_bitwise():
    layer, x, y = problem()
    w0 = [p.detach().clone() for p in layer.parameters()]
    optimizer = SAM(torch.optim.SGD(layer.parameters(), lr=0.0), RHO)
    sam_step(optimizer, layer, x, y)
    assert all(torch.equal(p, w) for p, w in zip(layer.parameters(), w0))


def test_adaptive_sam_scales_the_ball_by_the_weights():
    layer, x, y = problem()
    w0 = [p.detach().clone() for p in layer.parameters()]
    g0 = gradients(layer, x, y)
    norm = torch.sqrt(sum(((w.abs() * g) ** 2).sum() for w, g in zip(w0, g0)))
    optimizer = SAM(torch.optim.SGD(layer.parameters(), lr=LR), RHO, adaptive=True)
    optimizer.zero_grad()
    loss_of(layer, x, y).backward()
    optimizer.first_step()
    for p, w, g in zip(layer.parameters(), w0, g0):
        assert torch.allclose(p.detach() - w, RHO * w ** 2 * g / (norm + 1e-12), rtol=1e-5, atol=1e-7)


def test_a_step_without_first_step_is_the_base_optimizers():
    a, x, y = problem()
    b, _, _ = problem()
    plain = torch.optim.SGD(a.parameters(), lr=LR, momentum=MOMENTUM)
    wrapped = SAM(torch.optim.SGD(b.parameters(), lr=LR, momentum=MOMENTUM), RHO)
    for optimizer, layer in ((plain, a), (wrapped, b)):
        for _ in range(3):
            optimizer.zero_grad()
            loss_of(layer, x, y).backward()
            optimizer.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_make_optimizer_wraps_sam_and_the_schedule_reaches_the_base_optimizer():
    layer, _, _ = problem()
    plain, _ = make_optimizer([ParamGroup("layer", layer)], LR, OptimSettings(LR, nesterov=False))
    assert not isinstance(plain, SAM)
    optimizer, _ = make_optimizer([ParamGroup("layer", layer)], LR, OptimSettings(LR, nesterov=False, sam_rho=RHO))
    assert isinstance(optimizer, SAM) and isinstance(optimizer.base, torch.optim.SGD)
    assert optimizer.param_groups[0]["rho"] == RHO
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 ** s)
    optimizer.step()
    schedule.step()
    assert optimizer.base.param_groups[0]["lr"] == pytest.approx(LR / 2)


def test_state_dict_is_the_base_optimizers_so_a_resumed_sam_steps_exactly_as_an_uninterrupted_one():
    layer, x, y = problem()
    optimizer = SAM(torch.optim.SGD(layer.parameters(), lr=LR, momentum=MOMENTUM), RHO)
    sam_step(optimizer, layer, x, y)
    state = copy.deepcopy(optimizer.state_dict())  # as a checkpoint on disk holds it
    assert "momentum_buffer" in state["state"][0]
    twin, _, _ = problem()
    twin.load_state_dict(layer.state_dict())
    resumed = SAM(torch.optim.SGD(twin.parameters(), lr=LR, momentum=MOMENTUM), RHO)
    resumed.load_state_dict(state)
    assert resumed.param_groups is resumed.base.param_groups
    sam_step(optimizer, layer, x, y)
    sam_step(resumed, twin, x, y)
    assert all(torch.equal(p, q) for p, q in zip(layer.parameters(), twin.parameters()))


def test_a_non_finite_gradient_perturbs_nothing():
    layer, _, _ = problem()
    w0 = [p.detach().clone() for p in layer.parameters()]
    optimizer = SAM(torch.optim.SGD(layer.parameters(), lr=LR), RHO)
    for p in layer.parameters():
        p.grad = torch.full_like(p, float("inf"))
    optimizer.first_step()
    assert all(torch.equal(p, w) for p, w in zip(layer.parameters(), w0))


def test_a_negative_rho_is_refused():
    layer, _, _ = problem()
    with pytest.raises(ValueError, match="rho"):
        SAM(torch.optim.SGD(layer.parameters(), lr=LR), -0.1)


SAR_REPO = os.environ.get("DA_SAR_REPO")


@pytest.mark.skipif(not SAR_REPO or not (Path(SAR_REPO) / "sam.py").is_file(),
                    reason="DA_SAR_REPO does not point at a checkout of github.com/mr-eggplant/SAR")
@pytest.mark.parametrize("adaptive", [False, True])
def test_matches_the_sam_of_the_sar_repository(adaptive):
    spec = importlib.util.spec_from_file_location("reference_sam", Path(SAR_REPO) / "sam.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    a, x, y = problem()
    b, _, _ = problem()
    ours = SAM(torch.optim.SGD(a.parameters(), lr=LR, momentum=MOMENTUM), RHO, adaptive)
    theirs = reference.SAM(b.parameters(), torch.optim.SGD, rho=RHO, adaptive=adaptive, lr=LR, momentum=MOMENTUM)
    for _ in range(3):
        sam_step(ours, a, x, y)
        for k in range(2):
            theirs.zero_grad()
            loss_of(b, x, y).backward()
            (theirs.first_step if k == 0 else theirs.second_step)()
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))

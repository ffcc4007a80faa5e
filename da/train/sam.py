"""Sharpness-aware minimisation (Foret et al., "Sharpness-Aware Minimization for Efficiently Improving
Generalization", ICLR 2021), as an optimizer that wraps a base one (SGD, Adam).

SAM minimises the loss at the worst point of a ball of radius ``rho`` around the weights, to first order:

    e(w) = rho * g / ||g||          (g = dL/dw at w; ||.|| over every parameter of the optimizer)
    w   <- w - lr * step(dL/dw at w + e(w))   (the base optimizer's step, from w)

so one update takes two forward-backward passes: ``first_step()`` after the first backward moves
the weights to ``w + e(w)``; ``step()`` after the second backward puts them back to ``w``, bitwise,
and lets the base optimizer step with the gradient taken at ``w + e(w)``. The adaptive variant
(ASAM, Kwon et al., ICML 2021) scales the ball by the weights' magnitude: ``e(w) = rho * w^2 g /
||w g||``. The loop drives both steps without knowing about SAM: an update with ``perturb`` set
calls ``first_step()`` on its optimizer (``da.train.skeleton.apply_updates``), the next one
``step()``; a stage asks for SAM with ``OptimSettings.sam_rho > 0`` (``make_optimizer`` wraps its
base optimizer in this class).

Numerically the same as the SAM of github.com/davda54/sam (which SAR, Niu et al. 2023, copies), with
two differences that matter to a training loop: the learning-rate schedule's changes reach the base
optimizer (both share their parameter groups), and ``state_dict()`` is the base optimizer's (momentum
and Adam moments included: davda54's saves only its own, empty, state), so a run resumes exactly.
A ``step()`` without ``first_step()`` before it is the base optimizer's plain step.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

#: Added to the gradient norm before dividing by it (davda54/sam's 1e-12).
EPS = 1e-12


class SAM(torch.optim.Optimizer):
    """``base`` with SAM's ascent step ``first_step()`` before its own ``step()``."""

    def __init__(self, base: torch.optim.Optimizer, rho: float = 0.05, adaptive: bool = False) -> None:
        if rho < 0:
            raise ValueError(f"SAM's rho is a radius and must be >= 0, got {rho}")
        self.base = base
        # The base optimizer's group dicts gain rho and adaptive; both optimizers hold the same list.
        super().__init__(base.param_groups, {"rho": rho, "adaptive": adaptive})
        self.param_groups = base.param_groups
        self.state = base.state
        self.defaults.update(base.defaults)
        self._climbed: dict[Tensor, Tensor] = {}  # parameter -> its weights before first_step

    @torch.no_grad()
    def grad_norm(self) -> Tensor:
        """||g|| over every parameter with a gradient (ASAM: ||w g||)."""
        norms = [((p.abs() if group["adaptive"] else 1.0) * p.grad).norm(2)
                 for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not norms:
            return torch.zeros(())
        device = norms[0].device
        return torch.stack([n.to(device) for n in norms]).norm(2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """w <- w + e(w), remembering w. A non-finite gradient (an fp16 overflow, whose step the
        gradient scaler then skips) perturbs nothing."""
        norm = self.grad_norm()
        finite = torch.isfinite(norm)
        for group in self.param_groups:
            scale = torch.where(finite, group["rho"] / (norm + EPS), torch.zeros_like(norm))
            for p in group["params"]:
                if p.grad is None:
                    continue
                self._climbed[p] = p.detach().clone()
                e_w = (p.pow(2) if group["adaptive"] else 1.0) * p.grad * scale.to(p)
                p.add_(e_w.nan_to_num_(0.0, 0.0, 0.0))
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def restore(self) -> None:
        """The weights ``first_step`` moved back to what they were before it, bitwise."""
        for p, w in self._climbed.items():
            p.copy_(w)
        self._climbed.clear()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Back to w (if ``first_step`` moved it), then the base optimizer's step with the current gradients."""
        self.restore()
        return self.base.step(closure)

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restore()
        self.base.load_state_dict(state_dict)
        self.param_groups, self.state = self.base.param_groups, self.base.state

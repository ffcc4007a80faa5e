"""Mixed precision for a stage's steps: autocast of the forward (``train.precision``: bf16 or fp16)
and, for fp16, a gradient scaler (Micikevicius et al. 2018, "Mixed Precision Training").
``auto`` is bf16 where the device computes it natively (a GPU that supports it; a CPU with
AVX-512 BF16 or AMX, through oneDNN) and fp32 elsewhere, where emulated bf16 would be slower.

Adapters whose losses need float32 (kernels, covariances, log-softmax) get float32 inputs: the
adaptation stage computes ``adapter.loss`` outside autocast.
"""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch
from torch import Tensor


class Precision:
    """``autocast()`` for the forward; ``backward`` and ``step`` that scale fp16 losses."""

    def __init__(self, name: str, device: torch.device) -> None:
        self.name = resolve(name, device)
        self.device_type = device.type
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)
        self.scaler = torch.amp.GradScaler(device.type) if self.name == "fp16" else None

    def autocast(self) -> ContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optimizer)
        else:
            optimizer.step()

    def perturb(self, optimizer: torch.optim.Optimizer) -> None:
        """SAM's ascent step (``da.train.sam.SAM.first_step``); nothing for an optimizer without it.
        Under fp16 the gradients are still scaled: the step's direction g / ||g|| does not depend on
        the scale, and an overflowed gradient perturbs nothing (the scaler skips the step after)."""
        first_step = getattr(optimizer, "first_step", None)
        if first_step is not None:
            first_step()

    def update(self) -> None:
        """Once per training step, after every optimizer stepped: fp16's scale adapts."""
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware (so that autocast to bf16 is faster than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve(name: str, device: torch.device) -> str:
    """``train.precision`` as run on ``device``: ``auto`` becomes bf16 or fp32."""
    if name != "auto":
        return name
    return "bf16" if native_bf16(device) else "fp32"


def float32_outside_autocast(device_type: str) -> ContextManager:
    """Autocast off: what runs inside computes in the dtype of its inputs."""
    return torch.autocast(device_type, enabled=False)

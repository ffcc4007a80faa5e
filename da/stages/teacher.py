"""A teacher network that is the exponential moving average of the student's weights.

Mean teacher (Tarvainen & Valpola, NeurIPS 2017) and self-ensembling for domain adaptation
(French et al., ICLR 2018): after each optimiser step, teacher <- decay * teacher + (1 - decay) *
student, parameter by parameter; buffers (batch-norm statistics) are copied. Tarvainen's ramp
``min(decay, 1 - 1 / (updates + 1))`` lets the teacher follow the student closely at first.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


class EMATeacher(nn.Module):
    """Frozen copies of the student's modules, moved towards them by ``update``.

    With ``decay = 1`` the teacher never moves: the frozen source model of classic self-training.
    """

    def __init__(self, students: dict[str, nn.Module], decay: float = 0.999, ramp: bool = True) -> None:
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"the teacher's decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.ramp = ramp
        self.parts = nn.ModuleDict({name: copy.deepcopy(m) for name, m in students.items()})
        self.parts.requires_grad_(False)
        self.parts.eval()
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> "EMATeacher":
        """The teacher always predicts in eval mode (no dropout, running batch-norm statistics)."""
        super().train(mode)
        self.parts.eval()
        return self

    def current_decay(self) -> float:
        if self.decay >= 1.0 or not self.ramp:
            return self.decay
        return min(self.decay, 1.0 - 1.0 / (int(self.updates) + 1.0))

    @torch.no_grad()
    def update(self, students: dict[str, nn.Module]) -> None:
        """teacher <- d * teacher + (1 - d) * student for parameters; buffers copied."""
        d = self.current_decay()
        self.updates += 1
        if d >= 1.0:
            return
        for name, student in students.items():
            teacher = self.parts[name]
            for p_t, p_s in zip(teacher.parameters(), student.parameters()):
                p_t.mul_(d).add_(p_s.detach(), alpha=1.0 - d)
            for b_t, b_s in zip(teacher.buffers(), student.buffers()):
                b_t.copy_(b_s)

    @torch.no_grad()
    def copy_to(self, students: dict[str, nn.Module]) -> None:
        """student <- teacher, part by part (the teacher becomes the model's result)."""
        for name, student in students.items():
            student.load_state_dict(self.parts[name].state_dict())

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the teacher's modules applied in order (extractor, then head)."""
        for module in self.parts.values():
            x = module(x)
        return x

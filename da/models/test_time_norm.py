"""Normalisation layers at test time: which a model has, their affine parameters, and batch norm
that normalises with the test batch's statistics.

Batch norm trained on the source normalises with the source's running statistics. Under a shift,
the test batch's own statistics fit better ("Improving robustness against common corruptions by
covariate shift adaptation", Schneider et al., NeurIPS 2020); with few images a batch estimates
them badly, so the paper mixes in the source's as a prior worth ``prior`` images (their N):

    mean = N / (N + n) * source_mean + n / (N + n) * batch_mean   (likewise the variance)

for a batch of ``n`` images. ``TestTimeBatchNorm`` does so in train and eval mode alike and leaves
the source statistics untouched (no running update), so a reset to the source model restores them
with the weights and dropout can stay off while a method adapts. It shares the batch-norm layer's
parameters and buffers under the same names: checkpoints keep their keys.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

#: The layers whose affine parameters test-time methods adapt (Wang et al. 2021: batch norm; SAR,
#: Niu et al. 2023: group and layer norm too).
NORM_TYPES = (_BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm1d, nn.InstanceNorm2d)


class TestTimeBatchNorm(nn.Module):
    """A batch-norm layer normalising with the test batch's statistics and a source prior."""

    def __init__(self, bn: _BatchNorm, prior: float = 0.0) -> None:
        super().__init__()
        self.num_features, self.eps, self.prior = bn.num_features, bn.eps, prior
        self.weight, self.bias = bn.weight, bn.bias  # the same Parameters: optimizers made before stay valid
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, getattr(bn, name))

    def forward(self, x: Tensor) -> Tensor:
        if self.prior <= 0:  # the batch's statistics alone: batch norm in train mode, without the running update
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        dims = [0, *range(2, x.dim())]
        w = self.prior / (self.prior + x.shape[0])
        mean = w * self.running_mean + (1 - w) * x.mean(dims)
        var = w * self.running_var + (1 - w) * x.var(dims, unbiased=False)
        shape = [1, -1, *[1] * (x.dim() - 2)]
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.weight is not None:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    def extra_repr(self) -> str:
        return f"{self.num_features}, prior={self.prior}"


def use_test_statistics(module: nn.Module, prior: float = 0.0) -> int:
    """Replace every batch-norm layer under ``module`` by a ``TestTimeBatchNorm`` (in place); the
    number replaced. Layers replaced before get the new ``prior``."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, TestTimeBatchNorm):
            child.prior, count = prior, count + 1
        elif isinstance(child, _BatchNorm) and child.track_running_stats:
            setattr(module, name, TestTimeBatchNorm(child, prior))
            count += 1
        else:
            count += use_test_statistics(child, prior)
    return count


def norm_layers(modules: list[nn.Module]) -> list[nn.Module]:
    """The normalisation layers (batch, group, layer, instance; and test-time batch norm) under ``modules``."""
    return [m for module in modules for m in module.modules() if isinstance(m, (*NORM_TYPES, TestTimeBatchNorm))]


def has_batch_norm(modules: list[nn.Module]) -> bool:
    return any(isinstance(m, (_BatchNorm, TestTimeBatchNorm)) for module in modules for m in module.modules())


class Affine(nn.Module):
    """The affine parameters (weight and bias) of the normalisation layers under ``modules``, as
    one module an optimizer's parameter group can hold (the parameters are shared, not copied)."""

    def __init__(self, modules: list[nn.Module]) -> None:
        super().__init__()
        self.params = nn.ParameterList(p for layer in norm_layers(modules) for p in (layer.weight, layer.bias)
                                       if isinstance(p, nn.Parameter))

    def forward(self, *args: Tensor) -> Tensor:
        raise TypeError("Affine only groups parameters for an optimizer")


@torch.no_grad()
def copy_state(module: nn.Module) -> dict[str, Tensor]:
    """A copy of ``module``'s state dict (tensors cloned), for a reset to restore."""
    return {k: v.clone() for k, v in module.state_dict().items()}

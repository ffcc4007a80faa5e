"""One run over several processes with torch.distributed (started by ``torchrun``), or one process.

Each rank draws its own shard of every global batch (``train.batch_size`` per rank per domain: the
samplers draw ``batch_size * world_size`` indices from a generator seeded alike on every rank and
each rank keeps its slice), so ranks stay in step and a checkpoint of rank 0 resumes all of them.
Gradients are averaged by ``DistributedDataParallel`` over the extractor, head and adapter; rank 0
alone writes files and evaluates. Decisions that must be the same on every rank (stop on a signal,
stop on a non-finite loss, stop early) are agreed with one all-reduce. NCCL on GPUs, gloo on CPU;
the pattern is nanoGPT's train.py.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from da.errors import DAError


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank, number of ranks, and its local GPU index."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and evaluates."""
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.world_size > 1

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world_size

    def agree(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any rank."""
        if not self.on:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self) -> None:
        """Wait until every rank gets here (e.g. rank 0 has written the run's last files)."""
        if self.on:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a picklable object)."""
        if not self.on:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def launched() -> bool:
    """This process was started by torchrun (or another launcher setting torch.distributed's variables)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env() -> Dist:
    """Join the process group torchrun describes in the environment (NCCL with GPUs, else gloo)."""
    if not launched():
        return Dist()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        try:
            dist.init_process_group(backend)
        except Exception as exc:  # a rendezvous that times out or a port in use
            raise DAError(f"torch.distributed could not start the {backend} process group ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); check the torchrun rendezvous settings") from None
    here = Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(here.local_rank)
    return here


def shutdown() -> None:
    """Leave the process group. Objects that hold it (a DDP reducer in a reference cycle, pending
    work) are collected first: freed later, during interpreter shutdown, gloo's threads can abort
    the process ("terminate called without an active exception") after a run that succeeded."""
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()


class _Parts(nn.Module):
    """The trained parts under one module, so that one DDP reducer averages all their gradients.
    Its forward returns what it is given: a loss computed through the parts' own forwards."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(modules)

    def forward(self, loss: Tensor) -> Tensor:
        return loss


def gradient_sync(here: Dist, modules: dict[str, nn.Module], device: torch.device) -> Callable[[Tensor], Tensor]:
    """A function to pass each loss through before its backward: with several ranks, DDP's forward
    over the model's parts, so that backward averages their gradients across ranks (the parameters
    that a loss does not reach are found by ``find_unused_parameters``); with one, the identity."""
    if not here.on or not any(p.requires_grad for m in modules.values() for p in m.parameters()):
        return lambda loss: loss
    ddp = nn.parallel.DistributedDataParallel(_Parts(modules), device_ids=[device.index] if device.type == "cuda" else None,
                                              find_unused_parameters=True)
    return ddp


def gather(here: Dist, *tensors: Tensor) -> tuple[Tensor, ...]:
    """Every rank's rows of each tensor, rank 0's first, with gradients flowing back to each rank's own
    rows (``torch.distributed.nn.all_gather``): for an adapter whose loss needs the global batch."""
    if not here.on:
        return tensors
    from torch.distributed.nn.functional import all_gather

    return tuple(torch.cat(all_gather(t.contiguous())) for t in tensors)

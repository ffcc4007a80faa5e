"""Several labelled source domains as one pooled source: ``data.source: [mnist, syndigits, usps]``.

Multi-source adaptation (Peng et al., ICCV 2019, M3SDA; Zhao et al., NeurIPS 2018, MDAN) trains
on labelled batches from every source at once against one target. The sources are pooled into one
split that remembers each image's source (``MultiSourceSplit.part``): validation and test splits
are drawn from and scored on the pool, while training batches hold ``batch_size`` images *from
each source*, in source order, so the task loss is the mean of the per-source losses whatever the
sources' sizes (MNIST's 60,000 weigh as much as USPS's 7,291). Adapters are then applied to each
source against the target, or to the pooled sources (``train.multi_source``; see
``da.adapters.per_source``). Grey sources beside colour ones are repeated to 3 channels.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from da.data.channels import channels
from da.data.domain import DomainData, TensorSplit
from da.data.sampler import EpochPermutation
from da.errors import DAError


@dataclass
class MultiSourceSplit(TensorSplit):
    """Pooled images and labels, ``part[i]`` the index of image i's source in ``names``."""

    part: Tensor = dataclasses.field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    names: tuple[str, ...] = ()

    def to(self, device: torch.device) -> "MultiSourceSplit":
        return dataclasses.replace(self, x=self.x.to(device), y=self.y.to(device), part=self.part.to(device))

    def subset(self, index: Tensor) -> "MultiSourceSplit":
        return dataclasses.replace(self, x=self.x[index], y=self.y[index], part=self.part[index.to(self.part.device)])

    def hide_labels(self) -> "MultiSourceSplit":
        return dataclasses.replace(self, y=torch.full_like(self.y, -1))

    def sampler(self, batch_size: int, generator: torch.Generator,
                augment: Optional[Callable[[Tensor], Tensor]] = None, shard: tuple[int, int] = (0, 1)) -> "PerSourceSampler":
        return PerSourceSampler(self, batch_size, generator, augment, shard)


class PerSourceSampler:
    """``batch_size`` images from each source per batch (source 0's first), each source walked in
    epoch permutations of its own (``EpochPermutation``), all drawn with one generator.

    With ``shard=(rank, world_size)`` each source gives ``batch_size * world_size`` images a step,
    the same on every rank, and a rank keeps its slice of each (as ``BatchSampler`` does)."""

    def __init__(self, split: MultiSourceSplit, batch_size: int, generator: torch.Generator,
                 transform: Optional[Callable[[Tensor], Tensor]] = None, shard: tuple[int, int] = (0, 1)) -> None:
        self.split, self.batch_size, self.generator, self.transform = split, batch_size, generator, transform
        self.rank, self.world = shard
        self.members = [(split.part == k).nonzero().squeeze(1) for k in range(len(split.names))]
        for name, members in zip(split.names, self.members):
            if len(members) < batch_size * self.world:
                raise ValueError(f"batch size {batch_size * self.world} exceeds source {name}'s {len(members)} samples")
        self.permutations = [EpochPermutation(len(members), batch_size * self.world, generator, members.device)
                             for members in self.members]

    def next(self) -> tuple[Tensor, Tensor]:
        size = self.batch_size * self.world
        index = torch.cat([members[p.next()] for members, p in zip(self.members, self.permutations)])
        x, y = self.split.x[index], self.split.y[index]
        if self.transform is not None:
            x = self.transform(x)
        if self.world > 1:  # this rank's slice of each source's images, sources still in order
            keep = torch.cat([torch.arange(self.rank * self.batch_size, (self.rank + 1) * self.batch_size) + k * size
                              for k in range(len(self.members))]).to(x.device)
            x, y = x[keep], y[keep]
        return x, y

    def state_dict(self) -> dict:
        return {"sources": [p.state_dict() for p in self.permutations]}

    def load_state_dict(self, state: dict) -> None:
        for p, own in zip(self.permutations, state["sources"]):
            p.load_state_dict(own)


def smallest_source(split: object) -> tuple[str, int]:
    """What a training batch is drawn from and its size: "source train" and its length, or, for
    several sources (a batch from each), the smallest source's train split and its length."""
    if isinstance(split, MultiSourceSplit) and split.names:
        counts = torch.bincount(split.part.cpu(), minlength=len(split.names)).tolist()
        k = min(range(len(counts)), key=counts.__getitem__)
        return f"source {split.names[k]} train (the smallest source)", counts[k]
    return "source train", len(split)  # type: ignore[arg-type]


def pool(domains: list[DomainData], key: str = "data.source") -> DomainData:
    """One domain from several (the sources of ``data.source``, or the target stream of
    ``data.target``): the same class set required, grey ones repeated to colour."""
    first = domains[0]
    for d in domains:
        if not isinstance(d.train, TensorSplit) or not isinstance(d.test, TensorSplit):
            raise DAError(f"{key}: {d.name} is an image folder or list; a list of domains must hold in-memory "
                          f"datasets (digits), or pass one image folder / list as {key}")
    for d in domains[1:]:
        if d.num_classes != first.num_classes:
            raise DAError(f"{key}: {d.name} has {d.num_classes} classes but {first.name} has {first.num_classes}; "
                          f"list domains with the same classes")
    widest = max(channels(d.train) or 1 for d in domains)
    names = tuple(d.name for d in domains)

    def pooled(splits: list[TensorSplit]) -> MultiSourceSplit:
        xs = [s.x.expand(-1, widest, -1, -1) if s.x.shape[1] == 1 else s.x for s in splits]
        part = torch.cat([torch.full((len(s),), k, dtype=torch.long) for k, s in enumerate(splits)])
        return MultiSourceSplit(torch.cat(xs), torch.cat([s.y for s in splits]), part, names)

    return DomainData("+".join(names), pooled([d.train for d in domains]), pooled([d.test for d in domains]),
                      first.num_classes)

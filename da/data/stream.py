"""A target test split as a stream of batches, in the orders test-time adaptation is benchmarked on.

Each image is seen once. The stream walks the target domains in a sequence (``SEQUENCES``):

- ``continual``: one domain after another, in the config's order (Wang et al. 2022, CoTTA);
- ``gradual``: up the list and back down (severities 1 -> 5 -> 1 when the list holds one
  corruption's severities in order): every domain but the last has its images split in two halves,
  the first half seen on the way up, the second on the way down, so each image is still seen once;
- ``mixed``: every domain's images in one block, interleaved.

Within a block the images come in an order (``ORDERS``): ``shuffled``; ``class_correlated``, the
label-shift stream of RoTTA (Yuan et al., CVPR 2023) and TTAB (Zhao et al., ICML 2023): each class's
images are divided among ``slots`` (one per class by default) by a row of a Dirichlet(``alpha``)
draw, the slots are walked in order and, inside a slot, the classes in a random order, each class's
images together: a small ``alpha`` gives long runs of one label, a large one nearly i.i.d. batches;
or ``sequential``, the split's own order. Building the order reads the labels, as every benchmark's
sampler does; the method adapting on the stream never sees them.

Batches never straddle two blocks (a per-domain reset starts on a fresh batch): a block's last batch
may be smaller than ``batch_size``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from da.data.domain import DataSplit

ORDERS = ("shuffled", "class_correlated", "sequential")
SEQUENCES = ("continual", "gradual", "mixed")


@dataclass
class StreamPlan:
    """Where every image of the stream comes from: ``index`` into the split, in stream order, the
    domain of each (``domain``), and the start of each batch (``starts``, with the end last)."""

    index: Tensor
    domain: Tensor
    starts: list[int]
    #: The block (``blocks``) of each position: a per-domain reset happens where it changes.
    block: Tensor
    #: Blocks in one round of the sequence.
    blocks_per_round: int = 1

    @property
    def batches(self) -> int:
        return len(self.starts) - 1

    def batch(self, i: int) -> tuple[Tensor, Tensor, int]:
        """Image indices of batch ``i`` (0-based), the domain of each, and the round it is in."""
        lo, hi = self.starts[i], self.starts[i + 1]
        return self.index[lo:hi], self.domain[lo:hi], int(self.block[lo]) // max(self.blocks_per_round, 1)

    def domain_starts(self) -> list[bool]:
        """Per batch: whether a new block (a new domain, or the way back of a gradual stream) begins."""
        return [i == 0 or bool(self.block[self.starts[i]] != self.block[self.starts[i] - 1]) for i in range(self.batches)]


def class_correlated(labels: np.ndarray, alpha: float, rng: np.random.Generator, slots: int | None = None) -> np.ndarray:
    """Positions 0..len(labels)-1 in RoTTA's label-Dirichlet order (its ``LabelDirichletDomainSequence``)."""
    classes = np.unique(labels)
    num_slots = slots or len(classes)
    shares = rng.dirichlet([alpha] * num_slots, len(classes))
    slot_members: list[list[np.ndarray]] = [[] for _ in range(num_slots)]
    for c, share in zip(classes, shares):
        members = np.flatnonzero(labels == c)
        cuts = (np.cumsum(share)[:-1] * len(members)).astype(int)
        for s, part in enumerate(np.split(members, cuts)):
            slot_members[s].append(part)
    out = []
    for parts in slot_members:
        for k in rng.permutation(len(parts)):
            out.append(parts[k])
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def ordered(members: np.ndarray, labels: np.ndarray, order: str, alpha: float, rng: np.random.Generator,
            slots: int | None = None) -> np.ndarray:
    """``members`` (indices into the split) in ``order``."""
    if order == "shuffled":
        return members[rng.permutation(len(members))]
    if order == "class_correlated":
        return members[class_correlated(labels[members], alpha, rng, slots)]
    return members


def blocks(part: np.ndarray, domains: int, sequence: str, rng: np.random.Generator) -> list[np.ndarray]:
    """The stream's blocks of split indices, in sequence order (before ordering within each). A
    gradual stream halves each domain's images by a seeded permutation (not by the split's order,
    which may be sorted by label)."""
    members = [np.flatnonzero(part == k) for k in range(domains)]
    if sequence == "mixed":
        return [np.concatenate(members)]
    if sequence == "continual" or domains == 1:
        return members
    halves = []
    for m in members[:-1]:
        shuffled = m[rng.permutation(len(m))]
        halves.append((np.sort(shuffled[: len(m) // 2]), np.sort(shuffled[len(m) // 2 :])))
    return [h[0] for h in halves] + [members[-1]] + [h[1] for h in reversed(halves)]


def stream_plan(labels: Tensor, part: Tensor, domains: int, batch_size: int, order: str = "shuffled",
                alpha: float = 0.1, sequence: str = "continual", seed: int = 0, rounds: int = 1,
                slots: int | None = None) -> StreamPlan:
    """The stream over a split whose images have ``labels`` and belong to domain ``part`` (0 ..
    ``domains`` - 1), drawn with ``seed``: same arguments, same stream. ``rounds`` > 1 walks the
    sequence again (each image once per round, in a new order): the recurring stream on which a
    method that drifts shows it (Hoang et al., "Persistent Test-time Adaptation", NeurIPS 2024)."""
    rng = np.random.default_rng(seed)
    y, p = labels.cpu().numpy(), part.cpu().numpy()
    index, block, starts, offset = [], [], [], 0
    for r in range(rounds):
        for members in blocks(p, domains, sequence, np.random.default_rng([seed, r, 1])):
            members = ordered(members, y, order, alpha, rng, slots)
            index.append(members)
            block.append(np.full(len(members), len(block)))
            starts.extend(range(offset, offset + len(members), batch_size))
            offset += len(members)
    flat = torch.from_numpy(np.concatenate(index)).long() if index else torch.empty(0, dtype=torch.long)
    block_of = torch.from_numpy(np.concatenate(block)).long() if block else torch.empty(0, dtype=torch.long)
    return StreamPlan(flat, part.cpu()[flat], [*starts, offset], block_of, len(block) // max(rounds, 1))


class StreamSampler:
    """The stream's batches one after another: (images, labels) of the next batch. ``domain`` (each
    image's), ``round`` and ``new_block`` describe the batch ``next()`` returned last. Exact
    resume: its position."""

    def __init__(self, split: DataSplit, plan: StreamPlan) -> None:
        self.split, self.plan = split, plan
        self.batch_size = max((b - a for a, b in zip(plan.starts, plan.starts[1:])), default=0)
        self.new_blocks = plan.domain_starts()
        self.pos = 0
        self.domain, self.round, self.new_block = torch.empty(0, dtype=torch.long), 0, False

    def next(self) -> tuple[Tensor, Tensor]:
        if self.pos >= self.plan.batches:
            raise IndexError(f"the stream's {self.plan.batches} batches are all drawn")
        index, self.domain, self.round = self.plan.batch(self.pos)
        self.new_block = self.new_blocks[self.pos]
        self.pos += 1
        return self.split.images(index), self.split.y[index.to(self.split.y.device)]

    def state_dict(self) -> dict:
        return {"pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.pos = state["pos"]

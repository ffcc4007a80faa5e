"""Reading image files through a ``torch.utils.data.DataLoader``: a map-style data set whose items
are seeded, and a resumable sampler of training batches.

Exact resume, whatever the workers: each training batch is planned in the main process from the
sampler's own generator (one seed drawn from the run's generator when the sampler is made): the
indices come from a permutation per epoch, as ``da.data.sampler.BatchSampler`` draws them, and
each image gets a seed of its own. A worker seeds the random transforms of that image with it, so an
image is transformed the same way whichever worker loads it, and prefetching changes nothing. The
sampler's ``state_dict`` is the plan's state before the first batch the loop has not consumed yet:
batches prefetched but not consumed are drawn again after a resume.
"""
from __future__ import annotations

import collections
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from da.data.sampler import EpochPermutation
from da.errors import DAError

SEED_BOUND = 2**62


class BadImage(DAError):
    """An image that fails to decode when it is read (the scan missed it)."""


class ImageDataset(torch.utils.data.Dataset):
    """Item ``(index, seed)`` -> (uint8 image, label): decoded (or read from the decoded cache) and
    transformed; the batch is normalised after loading (``ImageTransform.normalise``). ``seed``
    seeds the random steps of the transform (None: unseeded)."""

    def __init__(self, paths: list, labels: Tensor, transform, channels: int, cache=None,
                 rows: Optional[Tensor] = None) -> None:
        self.paths = [str(p) for p in paths]
        self.labels = labels.cpu()
        self.transform = transform
        self.channels = channels
        self.cache = cache
        self.rows = rows

    def __len__(self) -> int:
        return len(self.paths)

    def decode(self, index: int) -> Tensor:
        """The file at ``index`` as a uint8 (C, H, W) tensor with the backbone's channels (grey or RGB)."""
        from PIL import Image

        path = self.paths[index]
        try:
            with Image.open(path) as image:
                image = image.convert("L" if self.channels == 1 else "RGB")
                array = np.asarray(image)
        except Exception as exc:
            raise BadImage(f"{path} cannot be decoded ({type(exc).__name__}: {str(exc)[:80]}); the run stopped "
                           f"with its last checkpoint kept: replace or remove the file (or set data.skip_bad_images: "
                           f"true) and resume the run") from None
        x = torch.from_numpy(array.copy())
        return x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1).contiguous()

    def __getitem__(self, item) -> tuple[Tensor, Tensor]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        if self.cache is not None:
            image, resized = self.cache.read(int(self.rows[index])), True
        else:
            image, resized = self.decode(index), False
        if seed is None or not self.transform.random:
            return self.transform(image, resized), self.labels[index]
        with torch.random.fork_rng(devices=[]):  # the caller's (main process') random state is left as it was
            # The CPU generator alone, which the transforms draw from and fork_rng restores:
            # torch.manual_seed would also reseed the GPUs' (left changed: fork_rng saves no device
            # here) and, before CUDA starts, record a stack trace per call (a quarter of the loading time).
            torch.default_generator.manual_seed(seed)
            return self.transform(image, resized), self.labels[index]


class BatchPlan:
    """Which images the next batches hold and their seeds: an epoch permutation (``EpochPermutation``,
    as every sampler walks), and one seed per image, from ``generator``."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator) -> None:
        self.batch_size, self.generator = batch_size, generator
        self.permutation = EpochPermutation(n, batch_size, generator)

    def draw(self) -> list[tuple[int, int]]:
        index = self.permutation.next()
        seeds = torch.randint(0, SEED_BOUND, (self.batch_size,), generator=self.generator)
        return list(zip(index.tolist(), seeds.tolist()))

    def state_dict(self) -> dict:
        return self.permutation.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.permutation.load_state_dict(state)


def loader_options(num_workers: int, device: torch.device) -> dict:
    """DataLoader settings: workers (prefetching two batches each), pinned memory on CUDA, and a
    generator of its own: a DataLoader draws its workers' base seed when it starts, and from the
    global generator that would shift the dropout masks of a resumed run (its loader starts later)."""
    options = {"num_workers": num_workers, "pin_memory": device.type == "cuda", "generator": torch.Generator()}
    if num_workers > 0:
        options.update(prefetch_factor=2, persistent_workers=False)
    return options


def load_error(exc: BaseException) -> DAError:
    """A worker's failure as one line: a bad image names its file, a crashed worker says what to do."""
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    if isinstance(exc, BadImage) or "BadImage" in text:
        last = lines[-1] if lines else text
        return BadImage(last.split("BadImage: ", 1)[-1])
    first = lines[0] if lines else type(exc).__name__
    return DAError(f"a data loader worker failed ({type(exc).__name__}: {first[:160]}); the run stopped with its last "
                   f"checkpoint kept; resume it, or set data.num_workers: 0 to load images in the main process")


class LoaderSampler:
    """Infinite training batches of a file-backed split, through a DataLoader; ``next()`` -> (x, y) on the device.

    ``augment`` (a batch-tensor transform such as ``da.data.augment.RandomAffine``) runs on the
    batch after loading, with the run's generator, as for in-memory splits. With
    ``shard=(rank, world_size)`` (torch.distributed) every rank plans the same global batch of
    ``batch_size * world_size`` images (its generator is seeded alike) and loads only its slice;
    per-image transforms are then those of one process, and ``augment`` runs on the slice.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, generator: torch.Generator,
                 augment: Optional[Callable[[Tensor], Tensor]], device: torch.device, num_workers: int,
                 shard: tuple[int, int] = (0, 1)) -> None:
        self.rank, self.world = shard
        if len(dataset) < batch_size * self.world:
            raise DAError(f"batch size {batch_size * self.world} exceeds the split's {len(dataset)} images; "
                          f"lower the batch size")
        self.dataset, self.batch_size, self.augment = dataset, batch_size, augment
        self.device, self.num_workers = device, num_workers
        self.shared = generator  # the run's: augment draws from it, and the checkpoint keeps its state
        seed = int(torch.randint(0, SEED_BOUND, (), generator=generator))
        self.plan = BatchPlan(len(dataset), batch_size * self.world, torch.Generator().manual_seed(seed))
        self._pending: collections.deque = collections.deque()  # plan states before each batch in flight
        self._iter: Optional[Iterator] = None

    def _plans(self) -> Iterator[list[tuple[int, int]]]:
        while True:
            self._pending.append(self.plan.state_dict())
            yield self.plan.draw()[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def _start(self) -> None:
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=self._plans(),
                                             **loader_options(self.num_workers, self.device))
        self._iter = iter(loader)

    def next(self) -> tuple[Tensor, Tensor]:
        if self._iter is None:
            self._start()
        try:
            x, y = next(self._iter)
        except Exception as exc:  # a worker's exception re-raised here (its traceback in the text), or a worker killed
            self.close()
            if isinstance(exc, DAError) and "\n" not in str(exc):
                raise
            raise load_error(exc) from None
        self._pending.popleft()
        x = self.dataset.transform.normalise(x.to(self.device, non_blocking=True))
        y = y.to(self.device, non_blocking=True)
        return (self.augment(x) if self.augment is not None else x), y

    def close(self) -> None:
        """Stop the workers; batches in flight are forgotten (the plan rewinds to the first unconsumed one)."""
        if self._pending:
            self.plan.load_state_dict(self._pending[0])
        self._pending.clear()
        if self._iter is not None:
            shutdown = getattr(self._iter, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            self._iter = None

    def state_dict(self) -> dict:
        plan = self._pending[0] if self._pending else self.plan.state_dict()
        return {"plan": plan, "generator": self.shared.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.close()
        self.plan.load_state_dict(state["plan"])
        self.shared.set_state(state["generator"])

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

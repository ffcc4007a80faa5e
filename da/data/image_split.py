"""A file-backed split: images read from disk on demand, implementing the loop's ``Split`` interface.

Nothing but the paths and labels stays in memory; each batch is decoded (or read from the decoded
cache), transformed per image and normalised by a ``torch.utils.data.DataLoader``. Evaluation
(``images``, ``batches``) uses the test transform; training batches (``sampler``) the train transform.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterator, Optional

import torch
from torch import Tensor

from da.data.loader import ImageDataset, LoaderSampler, loader_options

EVAL_BATCH = 256
#: Evaluation batches hold at most this many pixels (2,000 digits of 28 x 28, the loop's evaluation
#: batch), and at least 64 images: 2,000 images of 224 x 224 through a ResNet-50 at once would need
#: tens of GB of activations.
EVAL_PIXELS = 2000 * 28 * 28


@dataclass
class ImageSplit:
    """Image files with int64 labels ``y`` (-1 where hidden); ``input_shape`` is the backbone's (C, H, W)."""

    paths: list
    y: Tensor
    train_transform: object  # da.data.transforms.ImageTransform
    test_transform: object
    shape: tuple[int, int, int]
    device: torch.device = torch.device("cpu")
    num_workers: int = 0
    cache: object = None  # da.data.decoded_cache.DecodedCache, or None
    rows: Optional[Tensor] = None  # each image's row in the cache
    where: str = ""

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.shape)

    def dataset(self, train: bool) -> ImageDataset:
        ds = ImageDataset(self.paths, self.y, self.train_transform if train else self.test_transform,
                          self.shape[0], self.cache, self.rows)
        ds.where = self.where
        return ds

    def images(self, index: Tensor) -> Tensor:
        """The images at ``index`` (test transform), stacked on the split's device."""
        index = torch.as_tensor(index).cpu()
        return torch.cat([x for x, _ in self.subset(index).batches(EVAL_BATCH)]) if len(index) else \
            torch.empty(0, *self.shape, device=self.device)

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Every image in order, in batches of ``batch_size`` (test transform), on the split's device;
        large images in smaller batches (``EVAL_PIXELS``)."""
        batch_size = min(batch_size, max(64, EVAL_PIXELS // (self.shape[1] * self.shape[2])))
        ds = self.dataset(train=False)
        normalise = self.test_transform.normalise
        if self.num_workers == 0:  # no DataLoader machinery: read in this process
            for start in range(0, len(ds), batch_size):
                items = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
                yield (normalise(torch.stack([x for x, _ in items]).to(self.device)),
                       torch.stack([y for _, y in items]).to(self.device))
            return
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False,
                                             **loader_options(self.num_workers, self.device))
        for x, y in loader:
            yield normalise(x.to(self.device, non_blocking=True)), y.to(self.device, non_blocking=True)

    def subset(self, index: Tensor) -> "ImageSplit":
        index = torch.as_tensor(index).cpu()
        rows = self.rows[index] if self.rows is not None else None
        return replace(self, paths=[self.paths[i] for i in index.tolist()], y=self.y[index.to(self.y.device)], rows=rows)

    def hide_labels(self) -> "ImageSplit":
        return replace(self, y=torch.full_like(self.y, -1))

    def to(self, device: torch.device) -> "ImageSplit":
        return replace(self, y=self.y.to(device), device=torch.device(device))

    def sampler(self, batch_size: int, generator: torch.Generator,
                augment: Optional[Callable[[Tensor], Tensor]] = None, shard: tuple[int, int] = (0, 1)) -> LoaderSampler:
        """Infinite shuffled training batches (train transform), resumable exactly (``da.data.loader``);
        ``shard=(rank, world_size)``: this rank's slice of each global batch."""
        return LoaderSampler(self.dataset(train=True), batch_size, generator, augment, self.device, self.num_workers,
                             shard)

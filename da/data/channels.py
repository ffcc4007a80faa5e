"""One input format for a run whose domains differ in channels: grey images repeated to colour.

Digit domains are 28 x 28; MNIST, USPS and optdigits are grey (1 channel), syndigits and mnist_m
colour (3). When a run pairs a grey domain with a colour one, every grey split is repeated to 3
channels (the digit-five convention of Peng et al. 2019, M3SDA), so LeNet, which takes its input
channels from the data, sees one format. Runs whose domains are all grey stay 1-channel.

The repeat is a view (``Tensor.expand``): it costs no memory; a subset or batch drawn from it is
a 3-channel copy of only the drawn images.
"""
from __future__ import annotations

import dataclasses
from typing import TypeVar

from da.data.domain import TensorSplit

T = TypeVar("T")


def channels(split: object) -> int | None:
    """The split's channel count, if it is an image split (C, H, W)."""
    shape = getattr(split, "input_shape", None)
    return shape[0] if shape is not None and len(shape) == 3 else None


def repeat_grey(split: T, to: int) -> T:
    """A 1-channel in-memory split as ``to`` channels (a view); any other split unchanged."""
    if isinstance(split, TensorSplit) and channels(split) == 1 and to != 1:
        return dataclasses.replace(split, x=split.x.expand(-1, to, -1, -1))  # type: ignore[return-value]
    return split


def match_channels(domains: T) -> T:
    """``domains`` (a dataclass of splits) with grey splits repeated to the widest split's channels."""
    splits = {f.name: getattr(domains, f.name) for f in dataclasses.fields(domains)}  # type: ignore[arg-type]
    counts = {c for c in map(channels, splits.values()) if c is not None}
    if len(counts) < 2:
        return domains
    widest = max(counts)
    return dataclasses.replace(domains, **{name: repeat_grey(split, widest) for name, split in splits.items()
                                           if channels(split) == 1})  # type: ignore[type-var]

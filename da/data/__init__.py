"""Datasets (registered in ``da.registry.DATASETS``), splits and the batch sampler."""
from da.data import digits, image_datasets, mnist_m, optdigits, shapes, syndigits, synthetic  # noqa: F401  (registration)
from da.data.domain import DataSplit, DomainData, Sampler, Split, TensorSplit
from da.data.sampler import BatchSampler

__all__ = ["BatchSampler", "DataSplit", "DomainData", "Sampler", "Split", "TensorSplit"]

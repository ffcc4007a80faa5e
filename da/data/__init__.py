"""Datasets (registered in ``da.registry.DATASETS``), in-memory splits and the batch sampler."""
from da.data import digits, image_datasets, shapes, synthetic  # noqa: F401  (registration)
from da.data.domain import DomainData, Split
from da.data.sampler import BatchSampler

__all__ = ["BatchSampler", "DomainData", "Split"]

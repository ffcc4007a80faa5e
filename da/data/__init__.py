"""Datasets (``DatasetEntry`` records in ``da.registry.DATASETS``), splits and the batch sampler."""
from da.data import corrupted_digits, digits, image_datasets, mnist_m, optdigits, shapes, syndigits, synthetic, usps_shot  # noqa: F401  (registration)
from da.data.dataset_entry import DatasetEntry, dataset_entry, register_dataset, register_image_folder
from da.data.domain import DataSplit, DomainData, Sampler, Split, TensorSplit
from da.data.sampler import BatchSampler

__all__ = ["BatchSampler", "DataSplit", "DatasetEntry", "DomainData", "Sampler", "Split", "TensorSplit",
           "dataset_entry", "register_dataset", "register_image_folder"]

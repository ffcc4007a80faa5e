"""Datasets and the batch sampler; the real-data tests run when $DA_DATA_ROOT holds MNIST and USPS."""
from __future__ import annotations

import pytest
import torch

from conftest import MNIST_TEST, MNIST_TRAIN, needs_data, real_data_root
from da.config import DataConfig
from da.data import BatchSampler, Split
from da.domains import load_domains
from da.registry import DATASETS

USPS_TRAIN = [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644]
USPS_TEST = [359, 264, 198, 166, 200, 160, 170, 147, 166, 177]


def counts(y: torch.Tensor) -> list[int]:
    return torch.bincount(y, minlength=10).tolist()


@pytest.mark.data
@needs_data
@pytest.mark.parametrize("name,sizes,train_counts,test_counts", [
    ("mnist", (60000, 10000), MNIST_TRAIN, MNIST_TEST),
    ("usps", (7291, 2007), USPS_TRAIN, USPS_TEST),  # 16x16 resized once to 28x28
])
def test_digits_load_whole_splits_at_28x28_with_the_right_label_counts(name, sizes, train_counts, test_counts):
    d = DATASETS.get(name).load(real_data_root(), "source")
    assert d.train.x.shape == (sizes[0], 1, 28, 28) and d.test.x.shape == (sizes[1], 1, 28, 28)
    assert counts(d.train.y) == train_counts and counts(d.test.y) == test_counts
    assert d.train.x.dtype == torch.float32 and -1.0 <= d.train.x.min() < d.train.x.max() <= 1.0


@pytest.mark.data
@needs_data
def test_protocol_splits_hide_target_labels_and_hold_out_source_validation():
    d = load_domains(DataConfig(root=str(real_data_root()), source_val_size=5000), torch.device("cpu"))
    assert (len(d.source_train), len(d.source_val), len(d.source_test)) == (55000, 5000, 10000)
    assert (len(d.target_train), len(d.target_test)) == (7291, 2007)
    assert bool((d.target_train.y == -1).all()), "target training labels must be unreadable"


def test_synthetic_pair_has_a_shift_between_roles():
    s = DATASETS.get("synthetic").load(None, "source")
    t = DATASETS.get("synthetic").load(None, "target")
    assert s.train.x.shape[1:] == t.train.x.shape[1:] == (1, 28, 28)
    assert abs(float(s.train.x.mean() - t.train.x.mean())) > 0.2


def test_sampler_visits_every_index_once_per_epoch_and_is_seeded():
    split = Split(torch.arange(20).float().view(20, 1), torch.arange(20))
    sampler = BatchSampler(split, 5, torch.Generator().manual_seed(0))
    seen = torch.cat([sampler.next()[1] for _ in range(4)])
    assert sorted(seen.tolist()) == list(range(20))
    again = BatchSampler(split, 5, torch.Generator().manual_seed(0))
    assert torch.equal(torch.cat([again.next()[1] for _ in range(4)]), seen)

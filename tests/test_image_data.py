"""File-backed image data: folders and lists in every format, the same pixels as the in-memory
path, transforms, the decoded cache, and a sampler that resumes exactly whatever the workers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from da.data.domain import to_unit_range
from da.data.image_domain import ImageOptions, load_image_domain
from da.errors import DAError
from da.models.pretrained import DIGITS, IMAGENET, PretrainedCfg
from tests.image_data import digit_like, write_folder, write_list

SMALL = PretrainedCfg((3, 32, 32), IMAGENET.mean, IMAGENET.std, "resize_crop_flip", "center_crop")


def load(spec, cfg=DIGITS, **options):
    return load_image_domain(spec, "data.source", spec.get("_root", "/"), cfg, ImageOptions(**options))


def test_png_digits_equal_the_in_memory_tensors_bit_for_bit(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    images = np.stack([digit_like(i % 3, rng) for i in range(12)])
    for i, image in enumerate(images):
        (tmp_path / str(i % 3)).mkdir(exist_ok=True)
        Image.fromarray(image).save(tmp_path / str(i % 3) / f"{i:02d}.png")
    domain = load({"folder": str(tmp_path)})
    order = [i for c in range(3) for i in range(12) if i % 3 == c]  # class folders, then file names
    expected = to_unit_range(torch.from_numpy(images[order]))
    assert torch.equal(domain.train.images(torch.arange(12)), expected)
    assert domain.train.y.tolist() == [c for c in range(3) for _ in range(4)]
    assert domain.train.input_shape == (1, 28, 28)


def test_every_format_grey_and_colour_reads_to_the_backbones_input(tmp_path):
    write_folder(tmp_path / "d", size=40)  # png, jpg, bmp, webp; grey and RGB files mixed
    grey = load({"folder": str(tmp_path / "d")})
    colour = load({"folder": str(tmp_path / "d")}, SMALL)
    assert grey.classes == ["a", "b", "c"] and len(grey.train) == 24
    x = grey.train.images(torch.arange(24))
    assert x.shape == (24, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert colour.train.images(torch.arange(24)).shape == (24, 3, 32, 32)
    batches = list(colour.test.batches(10))
    assert [len(y) for _, y in batches] == [10, 10, 4]


def test_a_list_file_reads_like_the_folder(tmp_path):
    folder = write_folder(tmp_path / "d")
    listed = write_list(folder, tmp_path / "train.txt")
    by_list = load({"list": str(listed), "classes": ["a", "b", "c"]})
    by_folder = load({"folder": str(folder)})
    assert by_list.classes == by_folder.classes
    assert torch.equal(by_list.train.y, by_folder.train.y)
    assert torch.equal(by_list.train.images(torch.arange(24)), by_folder.train.images(torch.arange(24)))
    numbered = load({"list": str(listed)})
    assert numbered.classes == ["0", "1", "2"]


def test_test_fraction_holds_out_a_seeded_share_of_each_class(tmp_path):
    folder = write_folder(tmp_path / "d")
    a = load({"folder": str(folder), "test_fraction": 0.25})
    b = load({"folder": str(folder), "test_fraction": 0.25})
    c = load({"folder": str(folder), "test_fraction": 0.25}, split_seed=1)
    assert len(a.test) == 6 and len(a.train) == 18
    assert torch.bincount(a.test.y).tolist() == [2, 2, 2]
    assert a.test.paths == b.test.paths and a.test.paths != c.test.paths
    assert not set(a.test.paths) & set(a.train.paths)
    transductive = load({"folder": str(folder)})
    assert transductive.test.paths == transductive.train.paths and "test_fraction 0" in transductive.test_split


def test_a_test_folder_is_the_test_split(tmp_path):
    write_folder(tmp_path / "train")
    write_folder(tmp_path / "test", per_class=2, seed=1)
    domain = load({"folder": str(tmp_path / "train"), "test_folder": str(tmp_path / "test")})
    assert len(domain.train) == 24 and len(domain.test) == 6


def test_the_decoded_cache_gives_the_same_tensors_and_is_reused(tmp_path):
    folder = write_folder(tmp_path / "d", size=40, colour=True)
    plain = load({"folder": str(folder)}, SMALL)
    cached = load({"folder": str(folder)}, SMALL, cache=str(tmp_path / "cache"))
    assert torch.equal(plain.test.images(torch.arange(24)), cached.test.images(torch.arange(24)))
    draws = [s.next()[0] for s in (plain.train.sampler(4, torch.Generator().manual_seed(0)),
                                    cached.train.sampler(4, torch.Generator().manual_seed(0)))]
    assert torch.equal(*draws)
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    load({"folder": str(folder)}, SMALL, cache=str(tmp_path / "cache"))
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == files  # built once


def batches(sampler, n):
    return [sampler.next() for _ in range(n)]


def test_sampler_resumes_exactly_and_does_not_depend_on_workers(tmp_path):
    folder = write_folder(tmp_path / "d", size=40, colour=True)
    domain = load({"folder": str(folder)}, SMALL)  # random crops and flips: the per-image seeds matter
    split = domain.train
    one = split.sampler(5, torch.Generator().manual_seed(0))
    first = batches(one, 6)  # crosses an epoch (24 images, batches of 5)
    state = one.state_dict()
    rest = batches(one, 4)
    again = split.sampler(5, torch.Generator().manual_seed(99))
    again.load_state_dict(state)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(rest, batches(again, 4)))
    workers = domain.train.__class__(**{**split.__dict__, "num_workers": 2}).sampler(5, torch.Generator().manual_seed(0))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first + rest, batches(workers, 10)))
    assert not torch.equal(first[0][0], first[1][0])


def test_per_image_seeds_leave_the_gpu_generators_alone(tmp_path):
    """The per-image seeds reseed the CPU generator the transforms draw from, and no GPU's: a GPU
    run's dropout stream does not follow the last image's seed (without a GPU, torch.manual_seed
    would queue a CUDA seeding, stack trace and all, per image: a quarter of the loading time)."""
    folder = write_folder(tmp_path / "d", size=40, colour=True)
    sampler = load({"folder": str(folder)}, SMALL).train.sampler(4, torch.Generator().manual_seed(0))
    gpu_state = (lambda: [s.clone() for s in torch.cuda.get_rng_state_all()]) if torch.cuda.is_initialized() \
        else (lambda: torch.cuda._lazy_seed_tracker.manual_seed_all_cb)  # the GPU seeding queued for CUDA's start
    before = gpu_state()
    batches(sampler, 2)
    after = gpu_state()
    assert all(torch.equal(a, b) for a, b in zip(before, after)) if isinstance(before, list) else before is after


def test_a_sampler_with_prefetched_batches_saves_the_first_unconsumed(tmp_path):
    folder = write_folder(tmp_path / "d", size=40, colour=True)
    split = load({"folder": str(folder)}, SMALL, num_workers=2).train
    sampler = split.sampler(4, torch.Generator().manual_seed(3))
    batches(sampler, 2)
    state = sampler.state_dict()  # workers have prefetched batches 3, 4, ... by now
    expected = batches(sampler, 3)
    resumed = split.sampler(4, torch.Generator().manual_seed(3))
    resumed.load_state_dict(state)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(expected, batches(resumed, 3)))
    sampler.close()
    resumed.close()


def test_transform_lists_and_presets(tmp_path):
    folder = write_folder(tmp_path / "d", size=40, colour=True)
    steps = [{"name": "Resize", "size": [36, 36]}, {"name": "RandomCrop", "size": 32}, "RandomHorizontalFlip",
             {"name": "ColorJitter", "brightness": 0.4}]
    domain = load({"folder": str(folder)}, SMALL, transforms={"train": steps, "test": "center_crop"})
    x, _ = domain.train.sampler(4, torch.Generator().manual_seed(0)).next()
    assert x.shape == (4, 3, 32, 32)
    with pytest.raises(DAError, match=r"data.transforms.train\[0\].*no transform 'RandomCrp'; did you mean RandomCrop"):
        load({"folder": str(folder)}, SMALL, transforms={"train": ["RandomCrp"]})
    with pytest.raises(DAError, match="Normalize is added by da"):
        load({"folder": str(folder)}, SMALL, transforms={"train": ["Normalize"]})
    with pytest.raises(DAError, match="data.transforms.test turns .* into a 3x40x40 image but the backbone takes 3x32x32"):
        load({"folder": str(folder)}, SMALL, transforms={"test": ["RandomHorizontalFlip"]})
    with pytest.raises(DAError, match="ColorJitter rejected its arguments"):
        load({"folder": str(folder)}, SMALL, transforms={"train": [{"name": "ColorJitter", "brightnes": 1}]})


def test_real_mnist_written_as_png_reads_back_as_the_in_memory_tensors(tmp_path):
    """MNIST's test digits, written as PNG class folders as experiments/write_image_folders.py does,
    come back through the file-backed path bit for bit."""
    from tests.conftest import real_data_root

    root = real_data_root()
    if root is None:
        pytest.skip("real MNIST/USPS not under $DA_DATA_ROOT")
    from PIL import Image

    from da.data.digits import mnist

    for name, load, tolerance in (("mnist", mnist, 0.0),):
        test = load(root, False, "source").test
        index = torch.arange(0, len(test), len(test) // 40)
        x, y = test.images(index), test.y[index]
        pixels = ((x.squeeze(1).numpy() + 1) * 127.5).round().astype(np.uint8)
        for i, (image, label) in enumerate(zip(pixels, y.tolist())):
            (tmp_path / name / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp_path / name / str(label) / f"{i:03d}.png")
        domain = load_image_domain({"folder": str(tmp_path / name)}, "data.source", tmp_path, DIGITS, ImageOptions())
        order = torch.argsort(y, stable=True)  # class folders in label order, files in index order
        back = domain.train.images(torch.arange(len(index)))
        assert [int(domain.classes[c]) for c in domain.train.y] == y[order].tolist()
        assert (back - x[order]).abs().max() <= tolerance + 1e-6


def test_ranks_load_their_slices_of_one_global_batch(tmp_path):
    split = load({"folder": str(write_folder(tmp_path / "d", size=40, colour=True))}, SMALL).train
    whole = split.sampler(8, torch.Generator().manual_seed(0)).next()
    parts = [split.sampler(4, torch.Generator().manual_seed(0), shard=(rank, 2)).next() for rank in (0, 1)]
    assert torch.equal(torch.cat([x for x, _ in parts]), whole[0])
    assert torch.equal(torch.cat([y for _, y in parts]), whole[1])

"""data.augment: random affine transforms of training batches, per image, seeded by the run."""
from __future__ import annotations

import json

import pytest
import torch

from da.data import BatchSampler, Split
from da.data.augment import RandomAffine
from conftest import one_line_error, tiny_config


def square(n: int, side: int = 8) -> torch.Tensor:
    """``n`` copies of a centred bright square on a -1 background, 28x28."""
    x = -torch.ones(n, 1, 28, 28)
    lo = (28 - side) // 2
    x[:, :, lo:lo + side, lo:lo + side] = 1.0
    return x


def test_identity_parameters_leave_images_unchanged():
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    out = RandomAffine(0.0, [1.0, 1.0], 0.0, torch.Generator().manual_seed(0))(x)
    assert torch.allclose(out, x, atol=1e-5)


def test_zoom_enlarges_the_object_and_keeps_the_background():
    out = RandomAffine(0.0, [2.0, 2.0], 0.0, torch.Generator().manual_seed(0))(square(2))
    area = (out > 0).float().sum(dim=(1, 2, 3))
    assert torch.all((area > 3.5 * 64) & (area < 4.5 * 64)), area  # twice the side: four times the area
    assert out[:, :, 0, 0].eq(-1).all(), "pixels from outside the image must repeat the background"


def test_each_image_draws_its_own_transform_reproducibly():
    x = square(6)
    a = RandomAffine(30.0, [0.8, 1.2], 0.1, torch.Generator().manual_seed(3))(x)
    b = RandomAffine(30.0, [0.8, 1.2], 0.1, torch.Generator().manual_seed(3))(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1]), "images of one batch must get different transforms"


def test_sampler_applies_its_transform_and_keeps_labels():
    split = Split(square(32), torch.arange(32))
    plain = BatchSampler(split, 8, torch.Generator().manual_seed(0))
    shifted = BatchSampler(split, 8, torch.Generator().manual_seed(0), transform=lambda x: x + 1)
    (x0, y0), (x1, y1) = plain.next(), shifted.next()
    assert torch.equal(y0, y1) and torch.equal(x1, x0 + 1)


def is_row_of(x: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Per image of ``x``: whether it is, pixel for pixel, one of ``pool``'s images."""
    return (x.flatten(1)[:, None] == pool.flatten(1)[None]).all(-1).any(1)


def batches_seen(monkeypatch) -> dict[str, list[tuple[str, torch.Tensor, torch.Tensor]]]:
    """Record, per stage, every training batch's images with the split they were drawn from."""
    from da.stages.adapt import Adapt
    from da.stages.pretrain import Pretrain

    seen: dict[str, list] = {"pretrain": [], "adapt": []}
    for cls, stage in ((Pretrain, "pretrain"), (Adapt, "adapt")):
        def step(self, ctx, at, batch, log, real=cls.step, stage=stage):
            d = ctx.run.domains
            seen[stage].append(("source", batch["source"][0].clone(), d.source_train.x))
            if "target" in batch:
                seen[stage].append(("target", batch["target"][0].clone(), d.target_train.x))
            yield from real(self, ctx, at, batch, log)

        monkeypatch.setattr(cls, "step", step)
    return seen


@pytest.mark.parametrize("augment", [None, {"rotate": 10.0, "scale": [0.9, 1.2], "translate": 0.1, "domains": ["source"]},
                                     {"rotate": 10.0, "scale": [1.0, 1.0], "translate": 0.0, "domains": ["target"]}])
def test_augmentation_changes_the_training_batches_it_names_pretraining_included(augment, tmp_path, write_config, cli,
                                                                                   monkeypatch):
    seen = batches_seen(monkeypatch)
    cfg = tiny_config(data={"augment": augment} if augment else {})
    code, _, err = cli("train", "-c", write_config(cfg), "--out", tmp_path / "run", "-q")
    assert code == 0, err
    assert len(seen["pretrain"]) == cfg["pretrain"]["steps"] and seen["adapt"]
    for stage, batches in seen.items():
        for domain, x, pool in batches:
            drawn = is_row_of(x, pool)
            if augment and domain in augment["domains"]:  # every image transformed, in pretraining too
                assert not drawn.any(), f"{stage}: a {domain} image went through unaugmented"
            else:  # no augmentation, or a domain augment.domains leaves out: the images as they are
                assert drawn.all(), f"{stage}: a {domain} image was changed"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary.get("augment") == augment
    if augment:
        assert "augment:" in (tmp_path / "run" / "config.yaml").read_text()


def test_augmenting_a_dataset_of_vectors_is_a_one_line_error(tmp_path, write_config, cli, monkeypatch):
    from da.data import DatasetEntry
    from da.data.domain import DomainData
    from da.registry import DATASETS

    def vectors(root, download, role):  # a plugin dataset of flat feature vectors, not images
        g = torch.Generator().manual_seed(0)
        split = lambda n: Split(torch.randn(n, 784, generator=g), torch.arange(n) % 4)
        return DomainData(f"vectors_{role}", split(256), split(64), num_classes=4)

    monkeypatch.setitem(DATASETS._entries, "vectors", DatasetEntry("vectors", "flat feature vectors", loader=vectors))
    cfg = tiny_config(data={"source": "vectors", "target": "vectors", "augment": {"rotate": 10.0}})
    code, _, err = cli("train", "-c", write_config(cfg), "--out", tmp_path / "run", "-q")
    assert code == 2
    assert one_line_error(err).endswith("data.augment transforms images (channels x height x width), but dataset "
                                        "vectors holds inputs of shape 784; remove data.augment or drop source "
                                        "from data.augment.domains")

"""Bad image data sets: each mistake found before training, as one line naming the file or class."""
from __future__ import annotations

import os
import signal

import pytest
import torch

from da.data.image_domain import ImageOptions, load_image_domain
from da.data.image_folders import check_same_classes
from da.errors import DAError
from da.models.pretrained import DIGITS
from tests.conftest import one_line_error
from tests.image_data import write_folder, write_list


def load(spec, **options):
    return load_image_domain(spec, "data.source", "/", DIGITS, ImageOptions(**options))


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "d", formats=("png", "jpg"))


def truncate(path, keep=200):
    path.write_bytes(path.read_bytes()[:keep])


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def test_a_truncated_jpeg_is_named_and_skip_bad_images_skips_it(folder):
    bad = folder / "b" / "001.jpg"
    truncate(bad)
    with pytest.raises(DAError) as err:
        load({"folder": str(folder)})
    assert str(bad) in one_line(err) and "truncated" in one_line(err) and "skip_bad_images" in one_line(err)
    domain = load({"folder": str(folder)}, skip_bad_images=True)
    assert len(domain.train) == 23 and domain.skipped == [(str(bad), domain.skipped[0][1])]


def test_a_corrupt_png_is_named(folder):
    bad = folder / "a" / "000.png"
    data = bytearray(bad.read_bytes())
    data[60:70] = b"\x00" * 10  # inside the image data: the chunk's checksum fails
    bad.write_bytes(bytes(data))
    with pytest.raises(DAError, match="000.png: corrupt or truncated"):
        load({"folder": str(folder)})


def test_a_non_image_file_in_a_class_folder_is_named(folder):
    (folder / "c" / "labels.csv").write_text("a,b\n")
    (folder / "c" / ".DS_Store").write_text("ignored")
    with pytest.raises(DAError, match=r"labels.csv: not an image file \(extension .csv"):
        load({"folder": str(folder)})
    assert len(load({"folder": str(folder)}, skip_bad_images=True).train) == 24


def test_an_image_file_that_is_not_an_image_is_named(folder):
    (folder / "a" / "fake.jpg").write_text("not a jpeg")
    with pytest.raises(DAError, match="fake.jpg: not an image PIL can read"):
        load({"folder": str(folder)})


def test_an_empty_class_folder_is_named(folder):
    (folder / "empty").mkdir()
    with pytest.raises(DAError) as err:
        load({"folder": str(folder)})
    assert "class folder" in one_line(err) and "empty" in one_line(err)


def test_a_folder_with_no_class_folders_says_how_to_lay_it_out(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.png").write_bytes(b"")
    with pytest.raises(DAError, match=r"has no class folders; it holds 1 images directly; lay it out as .*/<class>/<image>"):
        load({"folder": str(tmp_path / "flat")})
    with pytest.raises(DAError, match="does not exist"):
        load({"folder": str(tmp_path / "nowhere")})


def test_a_list_line_naming_a_missing_file_is_named(folder, tmp_path):
    listed = write_list(folder, tmp_path / "train.txt")
    listed.write_text(listed.read_text() + "d/a/missing.png 0\n")
    with pytest.raises(DAError, match="missing.png: missing file"):
        load({"list": str(listed)})
    listed.write_text("d/a/000.png zero\n")
    with pytest.raises(DAError, match="line 1: 'd/a/000.png zero' is not 'path label'"):
        load({"list": str(listed)})
    listed.write_text("d/a/000.png 5\n")
    with pytest.raises(DAError, match=r"line 1: label 5 is out of range; labels are 0 - 2 \(3 classes\)"):
        load({"list": str(listed), "classes": ["a", "b", "c"]})


def test_mismatched_class_sets_name_the_classes_missing_on_each_side():
    with pytest.raises(DAError) as err:
        check_same_classes(["bike", "cup", "desk"], ["cup", "desk", "pen"], "amazon", "webcam")
    assert one_line(err).endswith("missing from target webcam: bike; missing from source amazon: pen")


def test_an_image_that_fails_when_first_read_stops_with_one_line(folder):
    split = load({"folder": str(folder)}).train
    truncate(folder / "a" / "002.png", 100)  # broken after the scan: found when the loader reads it
    for workers in (0, 2):
        sampler = split.__class__(**{**split.__dict__, "num_workers": workers}).sampler(24, torch.Generator())
        with pytest.raises(DAError) as err:
            sampler.next()
        assert "002.png cannot be decoded" in one_line(err) and "checkpoint kept" in one_line(err)


def test_a_crashed_loader_worker_stops_with_one_line(folder, monkeypatch):
    from da.data import loader

    def crash(self, index):
        os.kill(os.getpid(), signal.SIGKILL)

    split = load({"folder": str(folder)}).train
    monkeypatch.setattr(loader.ImageDataset, "decode", crash)
    sampler = split.__class__(**{**split.__dict__, "num_workers": 1}).sampler(4, torch.Generator())
    with pytest.raises(DAError) as err:
        sampler.next()
    assert "data loader worker failed" in one_line(err) and "data.num_workers: 0" in one_line(err)


def test_config_keys_of_image_data_are_checked(write_config, cli, folder):
    from tests.conftest import tiny_config

    cases = {
        "data.source.folder": ({"data": {"source": {"folder": 3}}}, "data.source.folder must be a path"),
        "data.source both": ({"data": {"source": {"folder": "a", "list": "b"}}}, "exactly one of folder"),
        "data.source.unknown": ({"data": {"source": {"folder": "a", "test_fraktion": 0.1}}}, "test_fraktion is not known"),
        "test_fraction": ({"data": {"source": {"folder": "a", "test_fraction": 1.5}}}, "must be a number in [0, 1)"),
        "transforms preset": ({"data": {"source": {"folder": "a"}, "transforms": {"train": "resize_crop"}}},
                              "did you mean resize_crop_flip"),
        "transforms in memory": ({"data": {"transforms": {"train": "resize"}}}, "applies to image folders"),
        "num_workers": ({"data": {"num_workers": -1}}, "data.num_workers must be a non-negative integer"),
        "cache": ({"data": {"cache": 3}}, "data.cache must be true, false or a folder"),
        "weights": ({"model": {"weights": "w.pth", "pretrained": True}}, "model.weights and model.pretrained"),
    }
    for name, (section, message) in cases.items():
        cfg = tiny_config(**section)
        code, _, err = cli("train", "-c", write_config(cfg), "--dry-run")
        assert code == 2, name
        assert message in one_line_error(err), name


def test_da_data_lists_counts_sizes_and_unreadable_files(cli, folder, tmp_path):
    truncate(folder / "b" / "003.jpg")
    code, out, _ = cli("data", folder)
    assert code == 1
    assert "d: 23 images, 3 classes" in out and "per class: a 8, b 7, c 8" in out
    assert "sizes (width x height): 28x28 (23)" in out and "unreadable: 1" in out and "003.jpg: corrupt or truncated" in out
    write_folder(tmp_path / "domains" / "one")
    write_folder(tmp_path / "domains" / "two", colour=True)
    code, out, _ = cli("data", tmp_path / "domains")
    assert code == 0 and "one: 24 images" in out and "two: 24 images" in out and "modes: RGB 24" in out
    listed = write_list(tmp_path / "domains" / "one", tmp_path / "domains" / "one.txt")
    code, out, _ = cli("data", listed)
    assert code == 0 and "one.txt: 24 images, 3 classes" in out
    config = tmp_path / "cfg.yaml"
    config.write_text(f"data:\n  source: {{folder: {tmp_path / 'domains' / 'one'}, test_fraction: 0.25}}\n"
                      f"  target: {{list: {listed}}}\n")
    code, out, _ = cli("data", config)
    assert code == 0 and "source train: 24 images" in out and "0.25 of each class held out" in out
    assert "target train: 24 images" in out and "test split: the training images (test_fraction 0)" in out

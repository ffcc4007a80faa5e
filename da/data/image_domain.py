"""A domain read from an image folder or an image list: ``data.source: {folder: DIR, ...}``.

Spec keys: ``folder`` (``DIR/<class>/<image>``) or ``list`` (``path label`` lines, paths relative to
``root``, else the list's folder); ``test_folder`` or ``test_list`` for a test split of its own;
else ``test_fraction``: a seeded, per-class fraction of the images held out for testing (by
``data.split_seed``), and 0 (the default) tests on the training images themselves, as the field does
for Office-31 and Office-Home (the target domain has no test split: its unlabelled training images
are its test images). ``classes``: a list of names or a file with one per line (label order); by
default the sorted folder names, or ``0 .. max label`` for a list. Relative paths are under the data
root (``data.root``, ``$DA_DATA_ROOT``, else ``./data``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from da.data.decoded_cache import open_cache
from da.data.domain import DomainData
from da.data.image_folders import ImageFiles, check_same_classes, list_file, list_folder, read_classes, scan
from da.data.image_split import ImageSplit
from da.data.transforms import build_transform
from da.errors import DAError
from da.models.pretrained import PretrainedCfg

SPEC_KEYS = ("folder", "test_folder", "list", "test_list", "root", "classes", "test_fraction")
#: Added to data.split_seed for the held-out test images, so the draw is not the source validation split's.
TEST_SEED_OFFSET = 2_000_003


@dataclass
class ImageOptions:
    """The ``data`` keys that shape a file-backed domain."""

    transforms: dict = field(default_factory=dict)  # {train: preset-or-list, test: preset-or-list}
    cache: Any = None  # a folder, True (``<data root>/decoded_cache``), or None / False
    skip_bad_images: bool = False
    num_workers: int = 0
    split_seed: int = 0


@dataclass
class ImageDomainData(DomainData):
    """A file-backed domain: its class names, the files skipped as unreadable, how its test split was made."""

    classes: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    test_split: str = ""


def default_workers() -> int:
    """Loader workers when ``data.num_workers`` is not set: 2 with CUDA (the GPU waits on decoding), else 0.

    On a CPU the model's step and the workers share the cores; see docs/datasets.md for measurements.
    """
    return 2 if torch.cuda.is_available() else 0


def check_image_spec(value: Any, key: str) -> None:
    """Validate a ``data.source`` / ``data.target`` mapping (raises a one-line DAError)."""
    if not isinstance(value, dict):
        raise DAError(f"config key {key} must be a dataset name (e.g. mnist) or a mapping such as {{folder: DIR}}; got {value!r}")
    unknown = [k for k in value if k not in SPEC_KEYS]
    if unknown:
        raise DAError(f"config key {key}.{unknown[0]} is not known; an image data set takes: {', '.join(SPEC_KEYS)} "
                      f"(a registered data set with options: {{name: NAME, option: value}})")
    for k in ("folder", "test_folder", "list", "test_list", "root"):
        if k in value and not isinstance(value[k], str):
            raise DAError(f"config key {key}.{k} must be a path (a string), got {value[k]!r}")
    if ("folder" in value) == ("list" in value):
        raise DAError(f"config key {key} needs exactly one of folder (DIR/<class>/<image>) or list (a 'path label' file)")
    if "test_folder" in value and "test_list" in value:
        raise DAError(f"config key {key} takes test_folder or test_list, not both")
    fraction = value.get("test_fraction", 0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise DAError(f"config key {key}.test_fraction must be a number in [0, 1), got {fraction!r}")
    if fraction and ("test_folder" in value or "test_list" in value):
        raise DAError(f"config key {key}: test_fraction holds out test images, but a test_folder / test_list is given; "
                      f"drop one of them")
    classes = value.get("classes")
    if classes is not None and not isinstance(classes, (str, list)):
        raise DAError(f"config key {key}.classes must be a list of names or a file, got {classes!r}")


def describe(spec: dict) -> str:
    """A short name for a spec in summaries and messages: the folder's or list's name."""
    return Path(spec.get("folder") or spec.get("list")).name


def _path(value: str, root: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def _files(spec: dict, folder_key: str, list_key: str, root: Path, classes: Optional[list[str]]) -> Optional[ImageFiles]:
    if spec.get(folder_key):
        return list_folder(_path(spec[folder_key], root), classes)
    if spec.get(list_key):
        base = _path(spec["root"], root) if spec.get("root") else None
        return list_file(_path(spec[list_key], root), base, classes)
    return None


def held_out(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """A boolean mask of the test images: ``round(fraction * n_c)`` of each class, by one seeded permutation."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique().tolist():
        members = order[labels[order] == c]
        mask[members[: round(fraction * len(members))]] = True
    return mask


def load_image_domain(spec: dict, key: str, root: Path, cfg: PretrainedCfg, options: ImageOptions) -> ImageDomainData:
    """Read, scan and split the domain ``spec`` (``key`` names it in messages: ``data.source``)."""
    classes = read_classes(spec.get("classes"), root)
    train = scan(_files(spec, "folder", "list", root, classes), options.skip_bad_images)
    test_files = _files(spec, "test_folder", "test_list", root, classes or train.classes)
    test = scan(test_files, options.skip_bad_images) if test_files is not None else None
    if test is not None:
        check_same_classes(train.classes, test.classes, f"{key} train ({train.where})", f"test ({test.where})")
    transforms = options.transforms or {}
    train_t = build_transform(transforms.get("train"), cfg, cfg.train_transform, "data.transforms.train")
    test_t = build_transform(transforms.get("test"), cfg, cfg.test_transform, "data.transforms.test")
    make = lambda files: _split(files, train_t, test_t, cfg, options, root)
    whole = make(train)
    if test is not None:
        train_split, test_split, how = whole, make(test), f"test_folder / test_list ({test.where})"
    else:
        fraction = float(spec.get("test_fraction", 0))
        if fraction:
            mask = held_out(whole.y, fraction, options.split_seed + TEST_SEED_OFFSET)
            train_split, test_split = whole.subset(torch.nonzero(~mask).flatten()), whole.subset(torch.nonzero(mask).flatten())
            how = f"test_fraction {fraction}: {int(mask.sum())} images held out (split_seed {options.split_seed})"
        else:
            train_split = test_split = whole
            how = "test_fraction 0: tested on its training images (transductive, as the field does for Office)"
    skipped = [(str(p), why) for p, why in train.bad + (test.bad if test is not None else [])]
    return ImageDomainData(describe(spec), train_split, test_split, len(train.classes), train.classes, skipped, how)


def _split(files: ImageFiles, train_t, test_t, cfg: PretrainedCfg, options: ImageOptions, root: Path) -> ImageSplit:
    y = torch.tensor(files.labels, dtype=torch.long)
    workers = options.num_workers
    split = ImageSplit(files.paths, y, train_t, test_t, cfg.input_size, num_workers=workers, where=files.where)
    _check_output(split, files)
    if options.cache:
        split = _cached(split, train_t, test_t, options, root)
    return split


def _check_output(split: ImageSplit, files: ImageFiles) -> None:
    """Both transforms must give the backbone's input size (else batches cannot be stacked)."""
    for train, name in ((False, "test"), (True, "train")):
        x, _ = split.dataset(train)[(0, 0)]
        if tuple(x.shape) != tuple(split.shape):
            got, want = "x".join(map(str, x.shape)), "x".join(map(str, split.shape))
            raise DAError(f"data.transforms.{name} turns {files.paths[0]} into a {got} image but the backbone takes "
                          f"{want}; end the list with a Resize or CenterCrop to {split.shape[1]}")


def _cached(split: ImageSplit, train_t, test_t, options: ImageOptions, root: Path) -> ImageSplit:
    size = train_t.cached_resize
    if size is None or size != test_t.cached_resize or repr(train_t.steps[0]) != repr(test_t.steps[0]):
        raise DAError("data.cache stores images after a leading fixed-size Resize shared by both transforms "
                      f"(train: {train_t.description}, test: {test_t.description}); start both with the same "
                      "{name: Resize, size: [H, W]} or drop data.cache")
    folder = root / "decoded_cache" if options.cache is True else Path(str(options.cache)).expanduser()
    cache = open_cache(folder, split.dataset(False), train_t.steps[0], size, options.num_workers)
    return ImageSplit(split.paths, split.y, train_t, test_t, split.shape, num_workers=split.num_workers,
                      cache=cache, rows=torch.arange(len(split)), where=split.where)

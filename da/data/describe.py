"""``da data PATH``: what an image folder, an image list or a config's domains hold, before training.

Per domain and split: the number of images and classes, the images per class, the image sizes and
colour modes, and every file that cannot be read (with why), found by the same scan training runs.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

from da.config import read_config
from da.data.dataset_entry import dataset_spec
from da.data.dataset_options import domain_name, show_options
from da.data.image_domain import _files
from da.data.image_folders import EXTENSIONS, ImageFiles, check_image, list_file, list_folder, read_classes
from da.domains import data_root
from da.errors import DAError


def _is_image_folder(folder: Path) -> bool:
    """A class folder layout: some sub-folder holds files directly (rather than only further folders)."""
    for sub in folder.iterdir():
        if sub.is_dir() and not sub.name.startswith(".") and any(p.is_file() for p in sub.iterdir()):
            return True
    return False


def _sizes(sizes: list[tuple[int, int]]) -> str:
    if not sizes:
        return "none"
    counts = Counter(sizes)
    common = ", ".join(f"{w}x{h} ({n})" for (w, h), n in counts.most_common(3))
    widths, heights = [w for w, _ in sizes], [h for _, h in sizes]
    more = f"; {len(counts)} distinct, width {min(widths)}-{max(widths)}, height {min(heights)}-{max(heights)}" \
        if len(counts) > 3 else ""
    return common + more


def describe_files(label: str, files: ImageFiles, echo: Callable[[str], None]) -> int:
    """Scan ``files`` and print what they hold; returns the number of unreadable files."""
    sizes, modes, bad, counts = [], Counter(), [], Counter()
    for path, y in zip(files.paths, files.labels):
        result = check_image(path)
        if isinstance(result, str):
            bad.append((path, result))
            continue
        sizes.append(result[0])
        modes[result[1]] += 1
        counts[y] += 1
    per_class = ", ".join(f"{name} {counts.get(i, 0)}" for i, name in enumerate(files.classes))
    echo(f"{label}: {len(files.paths) - len(bad)} images, {len(files.classes)} classes ({files.where})")
    echo(f"  per class: {per_class}")
    empty = [name for i, name in enumerate(files.classes) if not counts.get(i)]
    if empty:
        echo(f"  classes without a readable image: {', '.join(empty)}")
    echo(f"  sizes (width x height): {_sizes(sizes)}")
    echo(f"  modes: {', '.join(f'{m} {n}' for m, n in modes.most_common())}")
    echo(f"  unreadable: {len(bad)}")
    for path, why in bad:
        echo(f"    {path}: {why}")
    return len(bad)


def describe_spec(label: str, spec: dict, root: Path, echo: Callable[[str], None]) -> int:
    """Describe the train (and test) files of an image-folder or list spec; returns the unreadable count."""
    classes = read_classes(spec.get("classes"), root)
    train = _files(spec, "folder", "list", root, classes)
    bad = describe_files(f"{label} train", train, echo)
    test = _files(spec, "test_folder", "test_list", root, classes or train.classes)
    if test is not None:
        bad += describe_files(f"{label} test", test, echo)
        if test.classes != train.classes:
            echo("  test classes differ from train classes")
    else:
        fraction = spec.get("test_fraction", 0)
        echo(f"  test split: {'the training images (test_fraction 0)' if not fraction else f'{fraction} of each class held out'}")
    return bad


def describe_path(path: Path, echo: Callable[[str], None] = print) -> int:
    """Describe a folder, a list file or a config; returns the number of unreadable files."""
    path = Path(path)
    if not path.exists():
        raise DAError(f"{path} does not exist; give an image folder, an image list or a config file")
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        return _describe_config(path, echo)
    if path.is_file():
        return describe_files(path.name, list_file(path, None), echo)
    if _is_image_folder(path):
        return describe_files(path.name, list_folder(path), echo)
    domains = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not domains:
        loose = sum(1 for p in path.iterdir() if p.suffix.lower() in EXTENSIONS)
        raise DAError(f"{path} has no class folders{f' ({loose} images lie directly in it)' if loose else ''}; "
                      f"lay images out as {path}/<class>/<image>")
    return sum(describe_files(d.name, list_folder(d), echo) for d in domains)


def _describe_config(path: Path, echo: Callable[[str], None]) -> int:
    config = read_config(path)
    root = data_root(config.data)
    bad = 0
    for role in ("source", "target"):
        value = getattr(config.data, role)
        for item in value if isinstance(value, list) else [value]:
            entry, options = dataset_spec(item, f"data.{role}")
            if entry.image_spec is None:
                given = f"{entry.name} with {show_options(options)}: " if options else ""
                echo(f"{role}: {domain_name(entry.name, entry.options, options)} ({given}an in-memory data set under "
                     f"{root}: {entry.description})")
                continue
            bad += describe_spec(role, dict(entry.image_spec), root, echo)
    return bad

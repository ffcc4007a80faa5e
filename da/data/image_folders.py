"""Image folders (``DIR/<class>/<image>``) and image lists (``path label`` per line, the format of
Transfer-Learning-Library's ``ImageList``): the files, their labels and class names, and a scan that
finds unreadable files before training starts.

The scan opens each file's header (PIL reads the format and size without decoding), runs PIL's
``verify`` (a PNG's chunk checksums) and checks that a JPEG ends with its end-of-image marker, so a
truncated or corrupt image, or a file that is no image, is found in a fraction of a decode's time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from da.errors import DAError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: Files a folder may hold that are not data: hidden files (``.DS_Store``) and Windows' thumbnail caches.
IGNORED = ("Thumbs.db", "desktop.ini")


@dataclass
class ImageFiles:
    """Files with their labels (indices into ``classes``), and what the scan found."""

    where: str  # the folder or list file, for messages
    paths: list[Path]
    labels: list[int]
    classes: list[str]
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) per path, after a scan
    modes: list[str] = field(default_factory=list)  # PIL mode per path (L, RGB, RGBA, P, ...)
    bad: list[tuple[Path, str]] = field(default_factory=list)  # unreadable files and why, after a scan


def read_classes(value: str | list | None, base: Path) -> list[str] | None:
    """``classes``: a list of names, or a file with one name per line (relative to ``base``)."""
    if value is None or isinstance(value, list):
        return None if value is None else [str(v) for v in value]
    path = (base / value).expanduser()
    if not path.is_file():
        raise DAError(f"classes file {path} does not exist; give a file with one class name per line, or a list")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(set(names)) != len(names):
        raise DAError(f"classes file {path} names a class twice; list each class once")
    return names


def list_folder(folder: Path, classes: list[str] | None = None) -> ImageFiles:
    """``folder/<class>/<image>``; classes sorted by name unless ``classes`` lists them (in label order):
    then only those are read, and a class folder the list lacks is left out."""
    if not folder.is_dir():
        raise DAError(f"image folder {folder} does not exist; point data.source / data.target at a folder "
                      f"holding one sub-folder per class (or set DA_DATA_ROOT)")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        loose = sum(1 for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS)
        what = f"; it holds {loose} images directly" if loose else ""
        raise DAError(f"image folder {folder} has no class folders{what}; lay it out as {folder}/<class>/<image>")
    if classes is None:  # else the listed ones only: class folders the list lacks are left out (a label-set shift)
        classes = found
    paths, labels = [], []
    for label, name in enumerate(classes):
        sub = folder / name
        files = sorted(p for p in sub.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.name not in IGNORED) if sub.is_dir() else []
        if not files:
            raise DAError(f"class folder {sub} is empty or missing; add its images, remove the folder, or leave the "
                          f"class out of classes")
        paths.extend(files)
        labels.extend([label] * len(files))
    return ImageFiles(str(folder), paths, labels, list(classes))


def list_file(path: Path, root: Path | None, classes: list[str] | None = None) -> ImageFiles:
    """A list file: ``relative/path.jpg 3`` per line (paths relative to ``root``, else the file's folder)."""
    if not path.is_file():
        raise DAError(f"image list {path} does not exist; give a file with 'path label' per line")
    base = root if root is not None else path.parent
    paths, labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DAError(f"image list {path} line {number}: {line.strip()[:80]!r} is not 'path label' "
                          f"(a path, a space, an integer class index)")
        file, label = base / parts[0], int(parts[1])
        if label < 0 or (classes is not None and label >= len(classes)):
            bound = f"0 - {len(classes) - 1} ({len(classes)} classes)" if classes else "non-negative"
            raise DAError(f"image list {path} line {number}: label {label} is out of range; labels are {bound}")
        paths.append(file)
        labels.append(label)
    if not paths:
        raise DAError(f"image list {path} lists no images; give 'path label' per line")
    if classes is None:
        classes = [str(i) for i in range(max(labels) + 1)]
    return ImageFiles(str(path), paths, labels, classes)


def check_image(path: Path) -> tuple[tuple[int, int], str] | str:
    """``((width, height), mode)`` of a readable image, else what is wrong with it."""
    from PIL import Image, UnidentifiedImageError

    if path.suffix.lower() not in EXTENSIONS:
        return f"not an image file (extension {path.suffix or 'none'}; da reads {', '.join(EXTENSIONS)})"
    try:
        with Image.open(path) as image:
            size, mode, kind = image.size, image.mode, image.format
            image.verify()
        if kind == "JPEG" and not _jpeg_ends(path):
            with Image.open(path) as image:  # no end marker: decode to be sure before calling it truncated
                image.load()
    except FileNotFoundError:
        return "missing file"
    except UnidentifiedImageError:
        return "not an image PIL can read (corrupt, or another format)"
    except Exception as exc:  # truncated data, bad checksums, ...
        return f"corrupt or truncated ({type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''})"
    return size, mode


def _jpeg_ends(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(f.tell() - 64, 0))
        return b"\xff\xd9" in f.read()


def scan(files: ImageFiles, skip_bad: bool) -> ImageFiles:
    """Check every file; without ``skip_bad`` the first bad one is an error naming it, with ``skip_bad``
    the bad ones leave the list (``bad`` keeps them). A class left with no image is an error either way."""
    paths, labels, sizes, modes, bad = [], [], [], [], []
    for path, label in zip(files.paths, files.labels):
        result = check_image(path)
        if isinstance(result, str):
            if not skip_bad:
                raise DAError(f"{path}: {result}; replace or remove it, or set data.skip_bad_images: true to skip "
                              f"unreadable files (da data {files.where} lists them all)")
            bad.append((path, result))
            continue
        paths.append(path)
        labels.append(label)
        sizes.append(result[0])
        modes.append(result[1])
    present = set(labels)
    empty = [c for i, c in enumerate(files.classes) if i not in present]
    if empty and skip_bad:
        raise DAError(f"{files.where}: class {empty[0]!r} has no readable image left after skipping bad files; "
                      f"add readable images of it")
    return ImageFiles(files.where, paths, labels, files.classes, sizes, modes, bad)


def check_same_classes(source: list[str], target: list[str], source_name: str, target_name: str) -> None:
    """Closed-set adaptation: both domains have the same classes in the same order; one line naming the differences."""
    if source == target:
        return
    only_s = [c for c in source if c not in target]
    only_t = [c for c in target if c not in source]
    if not only_s and not only_t:
        raise DAError(f"{source_name} and {target_name} have the same classes in a different label order; give both "
                      f"the same classes list")
    show = lambda names: ", ".join(names[:8]) + (f" (+{len(names) - 8} more)" if len(names) > 8 else "") if names else "none"
    raise DAError(f"the source and target classes differ (closed-set adaptation needs the same classes): missing from "
                  f"target {target_name}: {show(only_s)}; missing from source {source_name}: {show(only_t)}")

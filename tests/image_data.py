"""Small generated image folders and list files for the file-backed data tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

FORMATS = ("png", "jpg", "bmp", "webp")


def digit_like(label: int, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """A uint8 size x size grey image: a bright bar whose position encodes the label, plus noise."""
    image = rng.integers(0, 40, (size, size), dtype=np.uint8)
    row = 3 + label * (size - 8) // 4
    image[row : row + 4, 4 : size - 4] = 255
    return image


def write_folder(root: Path, classes=("a", "b", "c"), per_class: int = 8, size: int = 28, colour: bool = False,
                 formats=FORMATS, seed: int = 0) -> Path:
    """``root/<class>/<i>.<ext>``, cycling through ``formats``; grey unless ``colour``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            grey = digit_like(label, rng, size)
            ext = formats[i % len(formats)]
            if colour or i % 3 == 1:  # a mix of grey and colour files in every folder
                image = Image.fromarray(np.stack([grey, 255 - grey, grey // 2], -1))
            else:
                image = Image.fromarray(grey)
            kwargs = {"lossless": True} if ext == "webp" else {"quality": 95} if ext == "jpg" else {}
            image.save(root / name / f"{i:03d}.{ext}", **kwargs)
    return root


def write_list(folder: Path, list_path: Path, classes=("a", "b", "c")) -> Path:
    """A 'path label' list of every image under ``folder`` (paths relative to the list's folder)."""
    lines = []
    for label, name in enumerate(classes):
        for file in sorted((folder / name).iterdir()):
            lines.append(f"{file.relative_to(list_path.parent)} {label}")
    list_path.write_text("\n".join(lines) + "\n")
    return list_path

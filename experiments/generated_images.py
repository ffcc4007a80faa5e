"""Generated colour image folders for the image benchmarks: ``<root>/<domain>/<split>/<class>/<i>.jpg``.

Each class is a coloured shape at a random place on a smooth background (drawn at 28 x 28 and
resized up, so the JPEGs are small, as photographs of objects are after compression); the target
domain swaps the colour channels and brightens the background, a domain shift to adapt to.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def _image(label: int, target: bool, rng: np.random.Generator, size: int) -> np.ndarray:
    small = np.zeros((28, 28, 3), np.float32)
    ramp = np.linspace(0, 1, 28, dtype=np.float32)
    small += (0.3 + 0.4 * rng.random(3, dtype=np.float32)) * ramp[:, None, None]
    cy, cx = rng.integers(6, 22, 2)
    yy, xx = np.mgrid[:28, :28]
    radius = 3 + label % 4
    mask = (np.abs(yy - cy) <= radius) & (np.abs(xx - cx) <= radius) if label % 2 else (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    colour = np.array([(label * 37 % 255), (label * 91 % 255), (label * 53 % 255)], np.float32) / 255
    small[mask] = colour
    small += 0.05 * rng.standard_normal(small.shape, dtype=np.float32)
    if target:
        small = small[..., ::-1] * 0.8 + 0.2
    return (small.clip(0, 1) * 255).astype(np.uint8)


def _write_chunk(args) -> int:
    from PIL import Image

    folder, domain, split, classes, start, count, size, seed = args
    rng = np.random.default_rng(seed)
    for i in range(start, start + count):
        label = i % classes
        small = _image(label, domain == "target", rng, size)
        image = Image.fromarray(small).resize((size, size), Image.BILINEAR)
        path = Path(folder) / domain / split / f"class{label:02d}" / f"{i:06d}.jpg"
        image.save(path, quality=85)
    return count


def write_generated(root: Path, per_domain: int, test_per_domain: int, classes: int = 10, size: int = 224,
                    workers: int = 2) -> Path:
    """Write (once: a ``done`` marker skips it) ``per_domain`` train and ``test_per_domain`` test images per domain."""
    marker = root / f"done-{per_domain}-{test_per_domain}-{classes}-{size}"
    if marker.exists():
        return root
    jobs = []
    for d, domain in enumerate(("source", "target")):
        for split, n in (("train", per_domain), ("test", test_per_domain)):
            for c in range(classes):
                (root / domain / split / f"class{c:02d}").mkdir(parents=True, exist_ok=True)
            chunk = 1000
            jobs += [(str(root), domain, split, classes, s, min(chunk, n - s), size, hash((d, split, s)) % 2**31)
                     for s in range(0, n, chunk)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write_chunk, jobs))
    marker.write_text("")
    return root

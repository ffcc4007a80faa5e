"""Write MNIST and USPS as PNG class folders, to run the shipped digit configs through the
file-backed path and compare it with the in-memory one (docs/datasets.md, "Same figures").

    python experiments/write_image_folders.py OUT [--data-root DIR]

writes OUT/{mnist,usps}/{train,test}/<digit>/<index>.png: 28x28 grey PNGs. MNIST's pixels are its
own (the file-backed path reads back the in-memory tensors bit for bit); USPS is the in-memory
path's 16 -> 28 bilinear resize, rounded to uint8. OUT must lie outside the repository. Then:

    da train -c configs/mnist_usps/dann.yaml \\
        --set 'data.source={folder: OUT/mnist/train, test_folder: OUT/mnist/test}' \\
        --set 'data.target={folder: OUT/usps/train, test_folder: OUT/usps/test}'
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_split(x, y, folder: Path) -> int:
    """Images in [-1, 1] (N, 1, 28, 28) -> folder/<label>/<index>.png; returns the count written."""
    from PIL import Image

    pixels = ((x.squeeze(1).numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
    for label in sorted(set(y.tolist())):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(pixels, y.tolist())):
        Image.fromarray(image).save(folder / str(label) / f"{i:05d}.png")
    return len(pixels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data-root", default=os.environ.get("DA_DATA_ROOT", "data"))
    args = parser.parse_args()
    out = args.out.resolve()
    if out == REPO or REPO in out.parents:
        sys.exit(f"{out} is inside the repository; write the folders elsewhere")
    from da.data.digits import mnist, usps

    for name, load in (("mnist", mnist), ("usps", usps)):
        domain = load(Path(args.data_root), False, "source")
        for split, data in (("train", domain.train), ("test", domain.test)):
            n = write_split(data.x, data.y, out / name / split)
            print(f"{name} {split}: {n} images -> {out / name / split}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A clean-MNIST LeNet scored on ``mnist_c``: the table of docs/corrupted_digits.md, and its figure.

    python experiments/corrupted_digits.py --out runs/mnist_c --severities 3 5 --figure docs/img/mnist_c.png

First builds every (corruption, severity) domain asked for, timing each first build (a domain
already cached is loaded, and its time says so); then trains the source model once
(configs/mnist_c/source_only.yaml: 2,000 source-only steps on MNIST) and scores it, without
adapting, on each domain's test split by one ``da train`` run each that loads its checkpoint.
Runs already finished under ``--out`` are read, not rerun. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from da.cli import main as da
from da.data.cache import cache_paths
from da.data.corrupted_digits import mnist_c
from da.data.corruptions import CORRUPTIONS, corrupt
from da.data.digits import mnist_uint8

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "mnist_c" / "source_only.yaml"


def build_times(root: Path, severities: list[int]) -> dict[tuple[str, int], str]:
    """Seconds to build each domain (``cached`` when it was already on disk)."""
    out = {}
    for corruption in CORRUPTIONS:
        for severity in severities:
            was_cached = any(p.exists() for p in cache_paths(root, f"mnist_c-{corruption}-{severity}-seed0"))
            start = time.perf_counter()
            mnist_c(root, False, "target", corruption=corruption, severity=severity)
            seconds = time.perf_counter() - start
            out[corruption, severity] = "cached" if was_cached else f"{seconds:.0f}"
            print(f"{corruption} {severity}: {out[corruption, severity]} s", flush=True)
    return out


def run(args: list[str], folder: Path) -> dict:
    """``da train ARGS --out FOLDER``'s summary (read when the run already finished)."""
    if not (folder / "summary.json").exists():
        code = da(["train", "-c", str(CONFIG), *args, "--out", str(folder), "-q"])
        assert code == 0, f"da train failed for {folder}"
    return json.loads((folder / "summary.json").read_text())


def figure(root: Path, path: Path, severities: tuple[int, ...] = (1, 3, 5), n: int = 4) -> None:
    """A grid: one row per corruption; ``n`` clean test digits, then the same at each severity."""
    from PIL import Image

    x, _ = mnist_uint8(root, False, False)
    pad = lambda t: np.concatenate(list(np.pad(t.numpy(), ((0, 0), (1, 1), (1, 1)), constant_values=128)), 1)
    gap = np.full((30, 6), 255, np.uint8)
    rows = [np.concatenate([pad(x[:n]), *(part for s in severities for part in (gap, pad(corrupt(x[:n], c, s, "test", 0))))], 1)
            for c in CORRUPTIONS]
    grid = np.concatenate(rows, 0)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/mnist_c", help="folder of the runs")
    parser.add_argument("--severities", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--figure", help="also write the grid of corrupted digits to this PNG")
    args = parser.parse_args()
    root, out = Path(os.environ.get("DA_DATA_ROOT") or "data"), Path(args.out)
    if args.figure:
        figure(root, Path(args.figure))
    times = build_times(root, args.severities)
    source = run([], out / "source")
    checkpoint = f"pretrain.checkpoint={out / 'source' / 'checkpoint.pt'}"
    accs = {}
    for corruption in CORRUPTIONS:
        for severity in args.severities:
            target = f"data.target={{name: mnist_c, corruption: {corruption}, severity: {severity}}}"
            summary = run(["--set", target, "--set", checkpoint], out / f"{corruption}-{severity}")
            accs[corruption, severity] = summary["target_test_acc"]
    print(f"\nclean MNIST test: {100 * source['source_test_acc']:.1f}\n")
    print("| corruption | " + " | ".join(f"severity {s}" for s in args.severities) + " | build (s) |")
    print("|---|" + "---:|" * (len(args.severities) + 1))
    for corruption in CORRUPTIONS:
        cells = " | ".join(f"{100 * accs[corruption, s]:.1f}" for s in args.severities)
        build = " / ".join(times[corruption, s] for s in args.severities)
        print(f"| {corruption} | {cells} | {build} |")
    means = " | ".join(f"**{100 * np.mean([accs[c, s] for c in CORRUPTIONS]):.1f}**" for s in args.severities)
    print(f"| mean | {means} | |")


if __name__ == "__main__":
    main()

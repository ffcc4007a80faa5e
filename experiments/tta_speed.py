"""Latency per batch and images/s of each test-time method, on one source model and one stream.

Each method runs as a normal `da train` run in this process, one after another (never beside other
work: compare the figures as ratios taken in one call), from the same source checkpoint, and the
step time of its stream (predict + update, evaluation and checkpoints excluded: summary.json's
``train_s``) gives its throughput:

    python experiments/tta_speed.py --source runs/<source run>/checkpoint.pt --out runs/tta_speed \\
        --methods norm tent eata sar cotta lame [--batch-size 64] [--threads 2]

It prints a markdown table (method, online accuracy, images/s, ms per batch) and writes it to
OUT/speed.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from da.composition import build_config, train
from da.config import read_yaml
from da.run_files import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]


def run_method(method: str, source: Path, out: Path, batch_size: int) -> dict:
    """One method's run on the MNIST -> USPS test stream from ``source``: its summary."""
    raw = read_yaml(ROOT / "configs" / "tta" / "base.yaml")
    raw["pretrain"] = {**raw.get("pretrain", {}), "steps": 0, "checkpoint": str(source)}
    raw["stages"] = ["pretrain", {"name": method, "batch_size": batch_size}]
    raw["train"] = {**raw.get("train", {}), "checkpoint_every": 10**9}
    run_dir = out / method
    run_dir.mkdir(parents=True)
    return train(build_config(raw), run_dir, show_progress=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, required=True, help="a source run's checkpoint.pt (configs/tta/base.yaml's model)")
    p.add_argument("--out", type=Path, required=True, help="a new folder for the runs")
    p.add_argument("--methods", nargs="+", default=["norm", "tent", "eata", "sar", "cotta", "lame"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    lines = [f"Stream: USPS test (2,007 images), batch {args.batch_size}, {args.threads} threads, one process.", "",
             "| method | online acc (%) | images/s | ms per batch |", "|---|---|---|---|"]
    for method in args.methods:
        s = run_method(method, args.source, args.out, args.batch_size)
        rate = s["train_imgs_per_s"]
        lines.append(f"| {method} | {100 * s['online_acc']:.2f} | {rate:.0f} | {1000 * args.batch_size / rate:.1f} |")
        print(lines[-1], flush=True)
    write_text_atomic(args.out / "speed.md", "\n".join(lines) + "\n")
    print(json.dumps({"written": str(args.out / "speed.md")}))


if __name__ == "__main__":
    main()

"""Peak memory of a file-backed run over 50,000 generated 224 x 224 JPEGs, with a small backbone.

    python experiments/bench_image_memory.py [--folder DIR] [--images 50000] [--steps 200] [--num-workers 2]

Writes the images once (half source, half target, 10 classes; a few hundred MB of JPEGs) under
DIR (default: a folder in the system's temp directory), then trains DANN on them for a few hundred
steps through the DataLoader path with a three-layer CNN (registered here as ``tiny_cnn``, with the
ImageNet input configuration: 224 x 224 RGB, random resized crops), so that the figure measures the
data path, not a large model. Held whole as float32, the train images alone would take
50,000 x 3 x 224 x 224 x 4 bytes = 30 GB. Prints the peak resident memory of the training
process and of its largest loader worker (getrusage).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import yaml
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generated_images import write_generated  # noqa: E402


def register_tiny_cnn() -> None:
    from da.models import register_backbone
    from da.models.pretrained import IMAGENET

    class TinyCNN(nn.Sequential):
        def __init__(self) -> None:
            super().__init__(nn.Conv2d(3, 16, 8, stride=8), nn.ReLU(), nn.Conv2d(16, 32, 4, stride=4), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.out_features = 32

    @register_backbone("tiny_cnn", pretrained_cfg=IMAGENET, batch_norm=False, out_features=32)
    def tiny_cnn(pretrained: bool = False, in_channels: int = 3) -> TinyCNN:
        """A three-layer CNN for 224 x 224 RGB images (the memory benchmark's)."""
        return TinyCNN()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "da_image_memory")
    parser.add_argument("--images", type=int, default=50000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=2)
    args = parser.parse_args()
    tick = time.perf_counter()
    root = write_generated(args.folder, args.images // 2, 200)
    on_disk = sum(p.stat().st_size for p in root.rglob("*.jpg"))
    print(f"images: {args.images} train + 400 test, {on_disk / 1e6:.0f} MB of JPEGs under {root} "
          f"({time.perf_counter() - tick:.0f} s to write or find)", flush=True)
    register_tiny_cnn()
    from da.cli import main as da_main

    config = {
        "seed": 0, "device": "cpu", "out_root": str(args.folder / "runs"),
        "data": {"source": {"folder": str(root / "source/train"), "test_folder": str(root / "source/test")},
                 "target": {"folder": str(root / "target/train"), "test_folder": str(root / "target/test")},
                 "source_val_size": 200, "num_workers": args.num_workers},
        "model": {"backbone": "tiny_cnn", "bottleneck": 64},
        "adapter": {"name": "dann", "hidden": 64},
        "train": {"steps": args.steps, "batch_size": args.batch_size, "eval_every": args.steps,
                  "checkpoint_every": args.steps, "log_every": 50},
    }
    path = args.folder / "memory.yaml"
    path.write_text(yaml.safe_dump(config))
    run = args.folder / "runs" / f"memory-{int(time.time())}"
    tick = time.perf_counter()
    code = da_main(["train", "-c", str(path), "--out", str(run), "-q"])
    wall = time.perf_counter() - tick
    if code:
        return code
    summary = json.loads((run / "summary.json").read_text())
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    whole = args.images * 3 * 224 * 224 * 4 / 1e9
    print(f"peak RSS: training process {own:.0f} MB, largest loader worker {workers:.0f} MB "
          f"(the train images held whole as float32: {whole:.1f} GB); {args.steps} steps in {wall:.0f} s, "
          f"train_imgs_per_s {summary['train_imgs_per_s']}, target_test_acc {summary['target_test_acc']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

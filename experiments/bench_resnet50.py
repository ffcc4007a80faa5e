"""CPU images/s of ResNet-50 with the Office settings (configs/office31/dann.yaml) on a generated folder.

    python experiments/bench_resnet50.py [--steps 6] [--batch-size 32] [--num-workers 0] [--folder DIR]

Writes 31 classes x 4 images of 300 x 300 JPEGs per domain (so the resize to 256 and the 224 crops
do real work), then runs the shipped Office-31 DANN config on them for ``--steps`` steps with random
initial weights (``model.pretrained: false``: the timing does not depend on the weights). Prints the
run's ``train_imgs_per_s`` (source + target images per second of training steps, evaluation
excluded) and the wall time.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generated_images import write_generated  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "da_resnet50")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=0)
    args = parser.parse_args()
    root = write_generated(args.folder, 124, 62, classes=31, size=300)
    from da.cli import main as da_main

    run = args.folder / "runs" / f"resnet50-{int(time.time())}"
    sets = [f"data.source={{folder: {root / 'source/train'}, test_folder: {root / 'source/test'}}}",
            f"data.target={{folder: {root / 'target/train'}, test_folder: {root / 'target/test'}}}",
            "data.source_val_size=31", f"data.num_workers={args.num_workers}", "model.pretrained=false",
            "device=cpu", f"train.steps={args.steps}", f"train.batch_size={args.batch_size}",
            f"train.eval_every={args.steps}", f"train.checkpoint_every={args.steps}", "train.log_every=1"]
    tick = time.perf_counter()
    code = da_main(["train", "-c", str(REPO / "configs/office31/dann.yaml"), "--out", str(run), "-q",
                    *(a for s in sets for a in ("--set", s))])
    if code:
        return code
    summary = json.loads((run / "summary.json").read_text())
    print(f"ResNet-50, Office settings, batch {args.batch_size} + {args.batch_size}, {args.steps} steps on CPU: "
          f"train_imgs_per_s {summary['train_imgs_per_s']}, wall {time.perf_counter() - tick:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time the `da` loop against a bare hand-written PyTorch loop over the same model, adapter and batches.

    python experiments/bench_loop.py --adapter dann [--steps 400] [--repeats 3] [--batch-size 64]
        [--compile] [--precision bf16] [--device cuda] [--nproc N]

Both run in this process, alternately (da, bare, da, bare, ...), on MNIST -> USPS when
$DA_DATA_ROOT holds the data (else the synthetic pair); each figure is the median over repeats,
since back-to-back timings on a shared CPU vary by several percent. Images/s counts source +
target images of adaptation steps; the `da` figure is its summary's ``train_imgs_per_s``
(evaluation and checkpoints excluded). The last line prints both figures and their ratio.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from da.composition import build_adapter, build_config, train
from da.domains import load_domains
from da.models import linear_head
from da.registry import BACKBONES
from da.train import lr_factor, pick_device
from da.train.precision import Precision


def config_for(adapter: str, steps: int, batch_size: int, synthetic: bool, compile_: bool = False,
               device: str = "auto", precision: str = "fp32"):
    data = {"source": "synthetic", "target": "synthetic", "source_val_size": 64} if synthetic else {}
    return build_config({
        "name": "bench", "seed": 0, "device": device, "data": data, "adapter": {"name": adapter},
        "pretrain": {"steps": 0},
        "train": {"steps": steps, "batch_size": batch_size, "eval_every": steps, "checkpoint_every": steps,
                  "log_every": 50, "compile": compile_, "precision": precision},
    })


def bare_loop(config, steps: int) -> float:
    """The hand-written reference: index batches, one forward over cat(x_s, x_t), SGD; images/s."""
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    d = load_domains(config.data, device)
    extractor = BACKBONES.get(config.model.backbone).build().to(device).to(memory_format=torch.channels_last)
    head = linear_head(extractor.out_features, d.num_classes).to(device)
    adapter = build_adapter(config, extractor.out_features, d.num_classes).to(device)
    if config.train.compile:
        extractor.compile()
        head.compile()
    t = config.train
    params = [*extractor.parameters(), *head.parameters(), *adapter.parameters()]
    opt = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=t.nesterov)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(t.lr_schedule, s / steps))
    b = t.batch_size
    precision = Precision(t.precision, device)
    xs, ys, xt = d.source_train.x, d.source_train.y, d.target_train.x
    perm_s, perm_t = torch.randperm(len(xs), device=device), torch.randperm(len(xt), device=device)
    ps = pt = 0
    start = time.perf_counter()
    for step in range(steps):
        if ps + b > len(xs):
            perm_s, ps = torch.randperm(len(xs), device=device), 0
        if pt + b > len(xt):
            perm_t, pt = torch.randperm(len(xt), device=device), 0
        i_s, i_t = perm_s[ps : ps + b], perm_t[pt : pt + b]
        ps, pt = ps + b, pt + b
        with precision.autocast():
            f_s, f_t = extractor(torch.cat([xs[i_s], xt[i_t]])).split([b, b])
            logits_s, logits_t = head(torch.cat([f_s, f_t])).split([b, b])
            task = F.cross_entropy(logits_s, ys[i_s])
        with torch.autocast(device.type, enabled=False):  # as the da loop: adapter losses on float32 inputs
            align, _ = adapter.loss(f_s.float(), f_t.float(), logits_s=logits_s.float(), logits_t=logits_t.float(),
                                    y_s=ys[i_s], progress=step / steps)
        loss = task + align
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * b * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", default="dann")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--compile", action="store_true", help="train.compile in both loops (torch.compile)")
    parser.add_argument("--precision", default="fp32", help="train.precision in both loops: fp32, bf16, fp16, auto")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--nproc", type=int, default=0,
                        help="also time `da train --nproc N` (DDP; its global images/s against one process's)")
    args = parser.parse_args()
    root = os.environ.get("DA_DATA_ROOT")
    synthetic = not (root and (Path(root) / "MNIST").is_dir())
    config = config_for(args.adapter, args.steps, args.batch_size, synthetic, args.compile, args.device, args.precision)
    print(f"data: {'synthetic pair' if synthetic else 'MNIST -> USPS'}; adapter {args.adapter}; "
          f"{args.steps} steps of {args.batch_size} + {args.batch_size} images; torch threads {torch.get_num_threads()}")
    bare_loop(config, 20)  # warm-up: oneDNN primitive caches, allocator
    ours_all, bare_all = [], []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            run_dir.mkdir()
            ours_all.append(train(config, run_dir, show_progress=False)["train_imgs_per_s"])
        bare_all.append(bare_loop(config, args.steps))
        print(f"repeat {r + 1}: da {ours_all[-1]:.0f} images/s, bare {bare_all[-1]:.0f} images/s")
    ours, bare = statistics.median(ours_all), statistics.median(bare_all)
    print(f"da loop: {ours:.0f} images/s")
    print(f"bare loop: {bare:.0f} images/s")
    print(f"da {ours:.0f} images/s, bare {bare:.0f} images/s, ratio da/bare {ours / bare:.3f}")
    if args.nproc > 1:
        print(f"da --nproc {args.nproc}: {ddp_images_per_s(config, args.nproc):.0f} images/s (all ranks)")


def ddp_images_per_s(config, nproc: int) -> float:
    """``da train --nproc N`` on the same config (each rank its batch): the summary's global images/s."""
    import json
    import subprocess

    import yaml

    from da.config import to_dict

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "c.yaml").write_text(yaml.safe_dump(to_dict(config)))
        subprocess.run([sys.executable, "-m", "da", "train", "-q", "-c", "c.yaml", "--out", "run", "--nproc", str(nproc)],
                       cwd=tmp, check=True)
        return json.loads((Path(tmp) / "run" / "summary.json").read_text())["train_imgs_per_s"]


if __name__ == "__main__":
    sys.exit(main())

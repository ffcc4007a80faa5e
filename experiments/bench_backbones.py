"""Training images/s, peak memory and FLOPs of the shipped backbones through the file-backed path.

    python experiments/bench_backbones.py [--device cuda] [--steps 20] [--batch-size 32] [--out runs/bench_backbones]
    python experiments/bench_backbones.py --loading-only --steps 30 --images-per-class 64    # data loading alone
    python experiments/bench_backbones.py --steps 2 --batch-size 4 --images-per-class 2 --input-size 32 \\
        --backbones timm/vit_tiny_patch16_224 --variants plain        # a check that it runs (no figures)

For each backbone at its input size (timm's / open_clip's, or ``--input-size``), on a generated
image folder (JPEGs, 2 domains) read through the decoded cache (``data.cache``):

- the ``da`` loop (``da train``, DANN, random weights: speed does not depend on them) and a bare
  hand-written loop over the same model and batches (one forward over cat(x_s, x_t), SGD), each
  with channels-last, bf16 autocast and torch.compile switched on or off (``--variants``; the da
  loop always runs channels-last): images/s and peak memory (CUDA: max allocated; CPU: the
  process's peak resident set, which only grows, so read it per process or in order);
- the FLOPs of one training step (``torch.utils.flop_counter.FlopCounterMode``, forward and
  backward) and the machine's measured matmul GFLOP/s, to put images/s against what the
  hardware can do;
- data loading alone (read, crop, flip, normalise, batch) from the decoded cache and from the JPEGs.

Writes ``results.md`` and ``results.csv`` under ``--out``. Measure on a quiet machine: other
processes on the cores change every figure.
"""
from __future__ import annotations

import argparse
import csv
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generated_images import write_generated  # noqa: E402

from da.composition import build_config, train  # noqa: E402
from da.config import ModelConfig  # noqa: E402
from da.domains import load_domains  # noqa: E402
from da.models.backbone_entry import backbone_entry  # noqa: E402

SHIPPED = ("resnet50", "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k", "timm/convnext_tiny",
           "timm/swin_tiny_patch4_window7_224", "open_clip/ViT-B-32")
VARIANTS = {"plain": (False, False, False), "channels_last": (True, False, False), "bf16": (False, True, False),
            "compile": (False, False, True), "all": (True, True, True)}


def run_config(root: Path, backbone: str, args, precision: str, compile_: bool) -> dict:
    model = {"backbone": backbone, "pretrained": False, **({"input_size": args.input_size} if args.input_size else {}),
             **({"backbone_kwargs": json.loads(args.backbone_kwargs)} if args.backbone_kwargs else {})}
    return {"seed": 0, "device": args.device, "out_root": str(root / "runs"), "model": model,
            "data": {"source": {"folder": str(root / "source/train")}, "target": {"folder": str(root / "target/train")},
                     "source_val_size": 2, "cache": str(root / "cache"), "num_workers": args.num_workers},
            "adapter": {"name": "dann"}, "pretrain": {"steps": 0},
            "train": {"steps": args.steps, "batch_size": args.batch_size, "eval_every": 10**9, "log_every": 10**9,
                      "checkpoint_every": 10**9, "precision": precision, "compile": compile_}}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def da_loop(root: Path, backbone: str, args, precision: str, compile_: bool) -> tuple[float, float]:
    config = build_config(run_config(root, backbone, args, precision, compile_))
    folder = Path(tempfile.mkdtemp(dir=root / "runs"))
    summary = train(config, folder, show_progress=False)
    return summary["train_imgs_per_s"], peak_memory_mb(torch.device(args.device))


def bare_loop(root: Path, backbone: str, args, channels_last: bool, bf16: bool, compile_: bool) -> tuple[float, float, float]:
    """Images/s, peak memory and FLOPs per step of the hand-written loop over the same batches."""
    config = build_config(run_config(root, backbone, args, "fp32", False))
    device = torch.device(args.device)
    domains = load_domains(config.data, device, config.model)
    extractor = backbone_entry(config.model).build().to(device)
    if channels_last:
        extractor = extractor.to(memory_format=torch.channels_last)
    head = torch.nn.Linear(extractor.out_features, domains.num_classes).to(device)
    step_model = torch.compile(lambda x: head(extractor(x))) if compile_ else (lambda x: head(extractor(x)))
    opt = torch.optim.SGD([*extractor.parameters(), *head.parameters()], lr=1e-3, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    source, target = domains.source_train.sampler(args.batch_size, gen), domains.target_train.sampler(args.batch_size, gen)

    def step() -> None:
        (xs, ys), (xt, _) = source.next(), target.next()
        x = torch.cat([xs, xt])
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(step_model(x)[: len(ys)], ys)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (and compilation)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = 2 * args.batch_size * args.steps / (time.perf_counter() - start)
    return rate, peak_memory_mb(device), counter.get_total_flops()


def matmul_gflops(device: torch.device, n: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def loading_rate(root: Path, backbone: str, args, cached: bool) -> float:
    """Images/s of the training batches alone: read (cache or JPEG), crop, flip, normalise, batch."""
    cfg = run_config(root, backbone, args, "fp32", False)
    if not cached:
        cfg["data"]["cache"] = False
    config = build_config(cfg)
    split = load_domains(config.data, torch.device("cpu"), config.model).source_train
    sampler = split.sampler(args.batch_size, torch.Generator().manual_seed(0))
    sampler.next()
    start = time.perf_counter()
    for _ in range(args.steps):
        sampler.next()
    return args.batch_size * args.steps / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=list(SHIPPED))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images-per-class", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=None, help="build every backbone for this size (checks)")
    parser.add_argument("--backbone-kwargs", default=None, help='JSON for timm.create_model, e.g. \'{"depth": 2}\'')
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "da_bench_backbones")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_backbones"))
    parser.add_argument("--loading-only", action="store_true",
                        help="only the data loading rates (decoded cache, JPEGs): no model, minutes not hours on a CPU")
    args = parser.parse_args()
    classes = 4
    root = write_generated(args.folder, args.images_per_class * classes, classes, classes=classes, size=300)
    (root / "runs").mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    rows = []
    gflops = matmul_gflops(device)
    for backbone in args.backbones:
        side = backbone_entry(ModelConfig(backbone, input_size=args.input_size,
                                          backbone_kwargs=json.loads(args.backbone_kwargs or "{}"))).pretrained_cfg.input_size[1]
        load_cache, load_jpeg = loading_rate(root, backbone, args, True), loading_rate(root, backbone, args, False)
        if args.loading_only:
            rows.append({"backbone": backbone, "input": side, "load_cache_imgs_per_s": round(load_cache, 1),
                         "load_jpeg_imgs_per_s": round(load_jpeg, 1)})
            print(json.dumps(rows[-1]), flush=True)
            continue
        for variant in args.variants:
            channels_last, bf16, compile_ = VARIANTS[variant]
            da_rate, da_mem = da_loop(root, backbone, args, "bf16" if bf16 else "fp32", compile_)
            bare_rate, bare_mem, flops = bare_loop(root, backbone, args, channels_last, bf16, compile_)
            rows.append({"backbone": backbone, "input": side, "variant": variant, "da_imgs_per_s": round(da_rate, 1),
                         "bare_imgs_per_s": round(bare_rate, 1), "da_over_bare": round(da_rate / bare_rate, 3),
                         "da_peak_mb": round(da_mem), "bare_peak_mb": round(bare_mem),
                         "step_gflop": round(flops / 1e9, 2), "achieved_gflops": round(flops / 1e9 * bare_rate / (2 * args.batch_size), 1),
                         "matmul_gflops": round(gflops, 1), "load_cache_imgs_per_s": round(load_cache, 1),
                         "load_jpeg_imgs_per_s": round(load_jpeg, 1)})
            print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"device {args.device}, batch {args.batch_size} + {args.batch_size}, {args.steps} steps", "",
             "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(str(v) for v in row.values()) + " |" for row in rows]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'results.md'} and results.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())

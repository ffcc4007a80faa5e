"""Fine-tuning strategies on MNIST -> USPS with k=10 labelled USPS images per class (100 images).

    python experiments/finetune_strategies.py --out runs/finetune_strategies [--seeds 0,1,2] [--quick] [--steps N]

Every method starts from the seed's source-pretrained LeNet (MNIST, base.yaml's pretraining; head
included) and trains on the 100 labelled USPS images alone (train.source_weight: 0):

- source model: no fine-tuning (the k=0 reference).
- frozen: the extractor stays fixed, only the head trains (train.extractor: freeze; Yosinski et
  al. 2014's frozen transfer, feature extraction).
- full fine-tuning: every layer at train.lr.
- discriminative lrs: conv1 at lr/2.6^2, conv2 at lr/2.6, fc at lr (train.lr_mults; ULMFiT's
  factor 2.6 per layer, Howard & Ruder 2018).
- gradual unfreezing: the head first, then fc, conv2, conv1 after a quarter, half and three
  quarters of the steps (train.unfreeze.every; ULMFiT).
- ULMFiT: gradual unfreezing and discriminative lrs together.

Writes results.csv (one row per method and seed, last-step accuracy), results.md (mean ± std)
and finetune_strategies.png (target test accuracy over the steps).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from transfer_runs import (Runner, config, curve, label_axes, main_guard, matplotlib_pyplot, parse_args, plot_mean_curves,  # noqa: E402
                           save_figure, seeds_note, table, write_csv)

K = 10
DISCRIMINATIVE = {"conv1": round(1 / 2.6**2, 4), "conv2": round(1 / 2.6, 4), "fc": 1.0}
METHODS = {"source_model": "source model (no fine-tuning)", "frozen": "frozen extractor (head only)",
           "full": "full fine-tuning", "discriminative": "discriminative lrs", "gradual": "gradual unfreezing",
           "ulmfit": "gradual unfreezing + discriminative lrs"}


def plan(method: str, seed: int, checkpoint: str, steps: int, quick: bool) -> dict:
    train = {"steps": steps, "eval_every": max(steps // (3 if quick else 10), 1), "source_weight": 0.0,
             "checkpoint_every": steps if quick else 1000}
    every = max(steps // 4, 1)
    train.update({
        "source_model": {"steps": 0, "source_weight": 1.0},
        "frozen": {"extractor": "freeze"},
        "full": {},
        "discriminative": {"lr_mults": DISCRIMINATIVE},
        "gradual": {"unfreeze": {"every": every}},
        "ulmfit": {"unfreeze": {"every": every}, "lr_mults": DISCRIMINATIVE},
    }[method])
    return config(seed=seed, adapter={"name": "source_only"},
                  data={"target_labels_per_class": 0 if method == "source_model" else K, "split_seed": seed},
                  pretrain={"steps": 0, "checkpoint": checkpoint}, train=train)


def main() -> None:
    args = parse_args(__doc__)
    runner = Runner(args.out, len(args.seeds) * (len(METHODS) + 1))
    rows, curves = [], {m: [] for m in METHODS if m != "source_model"}
    for seed in args.seeds:
        checkpoint = runner.pretrained(seed, args.pretrain_steps)
        for method in METHODS:
            summary = runner.run(f"{method}/k{K}/seed{seed}", plan(method, seed, checkpoint, args.steps, args.quick))
            rows.append({"method": method, "k": K if method != "source_model" else 0, "seed": seed,
                         "target_test_acc": summary["target_test_acc"], "source_test_acc": summary["source_test_acc"],
                         "steps": summary["steps"], "run": f"runs/{method}/k{K}/seed{seed}"})
            if method in curves:
                curves[method].append(curve(summary))
    write_csv(args.out / "results.csv", rows)
    md = ["# Fine-tuning strategies: MNIST -> USPS, k=10 labelled USPS images per class", "",
          seeds_note(args.seeds, args.quick, args.steps, args.pretrain_steps),
          "Training on the 100 labelled target images only, from the source-pretrained LeNet.", "",
          table(rows, "method", "k", list(METHODS), [0, K], labels=METHODS), ""]
    (args.out / "results.md").write_text("\n".join(md))
    plt = matplotlib_pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    plot_mean_curves(ax, curves, METHODS)
    source = [r["target_test_acc"] for r in rows if r["method"] == "source_model"]
    ax.axhline(100 * sum(source) / len(source), color="grey", linestyle="--", label=METHODS["source_model"])
    label_axes(ax, f"Fine-tuning on {K} labelled USPS images per class", "fine-tuning step", "USPS test accuracy (%)")
    save_figure(fig, args.out / "finetune_strategies.png")
    print(f"results: {args.out / 'results.md'}, {args.out / 'results.csv'}, {args.out / 'finetune_strategies.png'}")


if __name__ == "__main__":
    main_guard(main)

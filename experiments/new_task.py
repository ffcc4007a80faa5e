"""A new task on a pretrained extractor: head only vs fine-tuning vs from scratch, 500 training images.

    python experiments/new_task.py --out runs/new_task [--seeds 0,1,2] [--quick] [--steps N]

Two tasks with label sets the extractor never saw: mnist_parity (MNIST relabelled even / odd; the
extractor has seen these images, with digit labels) and shapes (synthetic circles vs squares, a
new input distribution as well). Each trains on 500 labelled images (data.source_train_size: 500,
drawn with data.split_seed = seed) and is tested on its test split (10,000 / 2,000 images):

- head only: the extractor of the seed's MNIST-pretrained LeNet (base.yaml's pretraining), frozen
  (pretrain.load: extractor, train.extractor: freeze); a new 2-class head trains on its features.
- fine-tuning: the same extractor and a new head, every layer trained.
- from scratch: a randomly initialised LeNet.

Writes results.csv (one row per task, method and seed: last-step accuracy), curves.csv (every
evaluation), results.md (mean ± std) and new_task.png (test accuracy over the steps per task).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from transfer_runs import (Runner, config, curve, label_axes, main_guard, matplotlib_pyplot, parse_args, plot_mean_curves,  # noqa: E402
                           save_figure, seeds_note, table, write_csv)

TASKS = {"mnist_parity": "MNIST parity (even / odd)", "shapes": "shapes (circle / square)"}
METHODS = {"head_only": "pretrained extractor, head only", "finetune": "pretrained extractor, fine-tuned",
           "scratch": "from scratch"}
TRAIN_IMAGES = 500


def plan(task: str, method: str, seed: int, checkpoint: str, steps: int, quick: bool) -> dict:
    train = {"steps": steps, "eval_every": max(steps // (5 if quick else 10), 1),
             "checkpoint_every": steps if quick else 1000}
    pretrain = {"steps": 0}
    if method != "scratch":
        pretrain.update(checkpoint=checkpoint, load="extractor")
    if method == "head_only":
        train["extractor"] = "freeze"
    return config(seed=seed, adapter={"name": "source_only"}, pretrain=pretrain, train=train,
                  data={"source": task, "target": task, "source_val_size": 1000,
                        "source_train_size": TRAIN_IMAGES, "split_seed": seed})


def main() -> None:
    args = parse_args(__doc__)
    runner = Runner(args.out, len(args.seeds) * (len(TASKS) * len(METHODS) + 1))
    rows, points, curves = [], [], {t: {m: [] for m in METHODS} for t in TASKS}
    for seed in args.seeds:
        checkpoint = runner.pretrained(seed, args.pretrain_steps)
        for task in TASKS:
            for method in METHODS:
                key = f"{task}/{method}/seed{seed}"
                summary = runner.run(key, plan(task, method, seed, checkpoint, args.steps, args.quick))
                rows.append({"task": task, "method": method, "seed": seed, "train_images": TRAIN_IMAGES,
                             "target_test_acc": summary["target_test_acc"], "steps": summary["steps"],
                             "run": f"runs/{key}"})
                curves[task][method].append(curve(summary))
                points += [{"task": task, "method": method, "seed": seed, "step": s, "target_test_acc": a}
                           for s, a in curve(summary)]
    write_csv(args.out / "results.csv", rows)
    write_csv(args.out / "curves.csv", points)
    md = ["# A new task on a pretrained extractor", "", seeds_note(args.seeds, args.quick, args.steps, args.pretrain_steps),
          f"{TRAIN_IMAGES} labelled training images per task; the extractor is MNIST-pretrained (10 digits).", "",
          table(rows, "method", "task", list(METHODS), list(TASKS), labels=METHODS), ""]
    (args.out / "results.md").write_text("\n".join(md))
    plt = matplotlib_pyplot()
    fig, axes = plt.subplots(1, len(TASKS), figsize=(11, 4))
    for ax, (task, title) in zip(axes, TASKS.items()):
        plot_mean_curves(ax, curves[task], METHODS)
        label_axes(ax, f"{title}, {TRAIN_IMAGES} training images", "training step", "test accuracy (%)")
    save_figure(fig, args.out / "new_task.png")
    print(f"results: {args.out / 'results.md'}, {args.out / 'results.csv'}, {args.out / 'new_task.png'}")


if __name__ == "__main__":
    main_guard(main)

"""Label efficiency on MNIST -> USPS: target accuracy against k labelled USPS train images per class.

    python experiments/label_efficiency.py --out runs/label_efficiency [--seeds 0,1,2] [--quick] [--steps N]

Three methods, each at k in {0, 1, 5, 10, 50, all} (all: every USPS train label, 7,291 images):

- target only: LeNet from scratch on the k*10 labelled USPS images alone (no k=0 point).
- fine-tuning: the source-pretrained model (MNIST, base.yaml's pretraining) fine-tuned on the k*10
  labelled USPS images alone (train.source_weight: 0), every layer at train.lr; k=0 is the
  source-pretrained model as it is.
- DANN + k labels: dann.yaml from the same source-pretrained model, the labelled USPS images'
  cross-entropy added to the source task loss (semi-supervised adaptation).

Each seed pretrains once and every method of the seed starts from that checkpoint; a seed also
draws its own labelled images (data.split_seed = seed; the draws are nested: the k=1 images are
among the k=5 ones). Writes results.csv (one row per method, k, seed), results.md (mean ± std)
and label_efficiency.png. Accuracies are those of the last step (no model selection).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from transfer_runs import (CONFIGS, Runner, config, main_guard, matplotlib_pyplot, mean_std, parse_args,  # noqa: E402
                           save_figure, seeds_note, table, write_csv)

KS = [0, 1, 5, 10, 50, "all"]
METHODS = {"target_only": "target only (from scratch)", "finetune": "source-pretrained fine-tuning",
           "dann": "DANN + k target labels"}


def plan(method: str, k: int | str, seed: int, checkpoint: str, steps: int, quick: bool) -> dict | None:
    """The config of one run, or None where the method has no run (target only without labels)."""
    train = {"steps": steps, "eval_every": steps if quick else max(steps // 4, 1),
             "checkpoint_every": steps if quick else 1000}
    data = {"target_labels_per_class": k, "split_seed": seed}
    if method == "target_only":
        if k == 0:
            return None
        return config(seed=seed, data=data, adapter={"name": "source_only"}, pretrain={"steps": 0},
                      train={**train, "source_weight": 0.0})
    pretrained = {"steps": 0, "checkpoint": checkpoint}
    if method == "finetune":
        return config(seed=seed, data=data, adapter={"name": "source_only"}, pretrain=pretrained,
                      train={**train, "source_weight": 0.0} if k else {**train, "steps": 0})
    return config(CONFIGS / "dann.yaml", seed=seed, data=data, pretrain=pretrained, train=train)


def plot(rows: list[dict], path: Path) -> None:
    plt = matplotlib_pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    positions = {str(k): i for i, k in enumerate(KS)}
    for method, label in METHODS.items():
        points = [(k, [r["target_test_acc"] for r in rows if r["method"] == method and r["k"] == str(k)]) for k in KS]
        points = [(positions[str(k)], mean_std(v)) for k, v in points if v]
        ax.errorbar([x for x, _ in points], [100 * m for _, (m, _) in points], yerr=[100 * s for _, (_, s) in points],
                    marker="o", capsize=3, label=label)
    ax.set_xticks(range(len(KS)), [str(k) for k in KS])
    ax.set_xlabel("labelled USPS train images per class (k)")
    ax.set_ylabel("USPS test accuracy (%)")
    ax.set_title("MNIST -> USPS: label efficiency")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def main() -> None:
    args = parse_args(__doc__)
    runs = [(m, k, s) for s in args.seeds for m in METHODS for k in KS if not (m == "target_only" and k == 0)]
    runner = Runner(args.out, len(runs) + len(args.seeds))
    rows = []
    for seed in args.seeds:
        checkpoint = runner.pretrained(seed, args.pretrain_steps)
        for method, k, s in [r for r in runs if r[2] == seed]:
            summary = runner.run(f"{method}/k{k}/seed{s}", plan(method, k, s, checkpoint, args.steps, args.quick))
            rows.append({"method": method, "k": str(k), "seed": s, "target_test_acc": summary["target_test_acc"],
                         "source_test_acc": summary["source_test_acc"], "steps": summary["steps"],
                         "labelled_target_images": summary.get("target_labels", {}).get("count", 0),
                         "run": f"runs/{method}/k{k}/seed{s}"})
    write_csv(args.out / "results.csv", rows)
    md = ["# Label efficiency: MNIST -> USPS", "", seeds_note(args.seeds, args.quick, args.steps, args.pretrain_steps),
          "Columns: k labelled USPS train images per class.", "",
          table(rows, "method", "k", list(METHODS), [str(k) for k in KS], labels=METHODS), ""]
    (args.out / "results.md").write_text("\n".join(md))
    plot(rows, args.out / "label_efficiency.png")
    print(f"results: {args.out / 'results.md'}, {args.out / 'results.csv'}, {args.out / 'label_efficiency.png'}")


if __name__ == "__main__":
    main_guard(main)

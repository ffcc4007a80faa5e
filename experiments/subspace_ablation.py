"""Where subspace alignment's gain comes from, on a source-pretrained extractor's features.

    python experiments/subspace_ablation.py RUN_DIR [--dims 20,100,200] [--fit-samples 10000] [--blocks conv2,bottleneck]

RUN_DIR is any finished run whose checkpoint holds a source-pretrained extractor (a pretraining
run of `da bench`, or a `da train` run of source_only / subspace). Its config gives the data.
On the same features (the same ``train.fit_samples`` draw as the loop's), it prints USPS-test
accuracy for:

- the pretrained linear head as it is (no adaptation);
- 1-NN on raw features (no adaptation, the paper's classifier);
- 1-NN with each domain centred on its own mean (no subspace at all);
- per dims d: 1-NN in the source basis for both domains (centred, no alignment), subspace
  alignment with 1-NN (Fernando et al. 2013, ``classifier: nn``), and the same two on features
  z-scored per domain (``standardize: true``).

The gap between the second and third is what the alignment matrix M = P_s^T P_t adds.
``--blocks`` takes the outputs of these extractor blocks, side by side (``adapter.blocks``), e.g.
LeNet's conv2 maps next to the top features.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from da.checkpoint import load_checkpoint
from da.composition import build_model, load_config
from da.domains import load_domains
from da.errors import DAError
from da.models.backbones import BlockOutputs
from da.models.head import NearestNeighbourHead
from da.stages.subspace import SubspaceAlignment, fit_draw
from da.train import batched

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transfer_runs import main_guard  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--dims", default="20,100,200", help="comma-separated subspace sizes")
    parser.add_argument("--fit-samples", type=int, default=10000, help="images per domain, as train.fit_samples")
    parser.add_argument("--blocks", default=None, help="comma-separated extractor blocks whose outputs to use (default: the top)")
    args = parser.parse_args()
    if not (args.run_dir / "checkpoint.pt").is_file():
        raise DAError(f"{args.run_dir} holds no checkpoint.pt; pass a finished run folder")
    config = load_config(args.run_dir / "config.yaml")
    device = torch.device("cpu")
    domains = load_domains(config.data, device)
    model = build_model(config, domains, device)
    state = load_checkpoint(args.run_dir / "checkpoint.pt", device)
    model.extractor.load_state_dict(state["extractor"])
    if "transform" not in state:
        model.head.load_state_dict(state["head"])
    model.extractor.eval()
    features = model.extractor if args.blocks is None else BlockOutputs(model.extractor, args.blocks.split(","))
    source, target = fit_draw(domains, args.fit_samples, config.seed)  # the images the loop fits on
    with torch.no_grad():
        f_s = batched(features, domains.source_train.x[source])
        f_t = batched(features, domains.target_train.x[target])
        f_test = batched(features, domains.target_test.x)
        y_s, y_test = domains.source_train.y[source], domains.target_test.y
        k = domains.num_classes
        acc = lambda logits: (logits.argmax(1) == y_test).float().mean().item()
        nn1 = lambda bank, query: acc(NearestNeighbourHead(k, bank, y_s)(query))
        rows = []
        if "transform" not in state:
            rows.append(("pretrained linear head, no adaptation",
                         acc(model.head(batched(model.extractor, domains.target_test.x)))))
        rows.append(("1-NN on raw features, no adaptation", nn1(f_s, f_test)))
        rows.append(("1-NN, each domain centred on its own mean", nn1(f_s - f_s.mean(0), f_test - f_t.mean(0))))
        for dims in (int(d) for d in args.dims.split(",")):
            sa = SubspaceAlignment(f_s.shape[1], dims=dims)
            sa.fit(f_s, f_t)
            p_s = sa.basis_s
            rows.append((f"d={dims}: 1-NN, centred, both in the source basis (no M)",
                         nn1((f_s - sa.mean_s) @ p_s, (f_test - sa.mean_t) @ p_s)))
            rows.append((f"d={dims}: subspace alignment, 1-NN",
                         nn1(sa(f_s, "source"), sa(f_test, "target"))))
            sa = SubspaceAlignment(f_s.shape[1], dims=dims, standardize=True)
            sa.fit(f_s, f_t)
            z = lambda f, domain: (f - getattr(sa, f"mean_{domain}")) / getattr(sa, f"std_{domain}")
            rows.append((f"d={dims}: standardized, both in the source basis (no M)",
                         nn1(z(f_s, "s") @ sa.basis_s, z(f_test, "t") @ sa.basis_s)))
            rows.append((f"d={dims}: subspace alignment, 1-NN, standardized",
                         nn1(sa(f_s, "source"), sa(f_test, "target"))))
    print(f"{config.data.source} -> {config.data.target}, {args.blocks or 'top'} features of {args.run_dir}, "
          f"{len(source)} + {len(target)} fit images; {config.data.target} test accuracy:")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:.4f}")


if __name__ == "__main__":
    main_guard(main)

"""Feature pictures: t-SNE of source and target features before and after adaptation, and the
same points in TensorBoard's projector."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from da.run_files import replace_atomically

#: Wider features are reduced to this many dimensions by PCA before t-SNE (the usual preprocessing).
PCA_DIMS = 50
DOMAIN_COLOURS = {"source": "tab:blue", "target": "tab:orange"}
CLASS_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">")
#: t-SNE iterations: on 2,000 clustered points the final KL divergence at 750 was within 1% of
#: sklearn's default 1000, at 3/4 of the time.
MAX_ITER = 750


def subsample(features: Mapping[str, Tensor], labels: Mapping[str, Tensor] | None = None,
              per_domain: int = 1000, seed: int = 0) -> tuple[Tensor, list[str], Tensor | None]:
    """Up to ``per_domain`` rows of each domain, drawn with ``seed``, stacked in ``features``' order.

    Returns (features [N, d], the domain of each row, labels [N] or None). Two calls with the same
    seed and the same row counts pick the same rows, so "before" and "after" show the same images.
    """
    rng = np.random.default_rng(seed)
    feats, domains, labs = [], [], []
    for domain, f in features.items():
        if labels is not None and len(labels[domain]) != len(f):
            raise ValueError(f"{domain}: {len(f)} feature rows but {len(labels[domain])} labels")
        idx = torch.from_numpy(np.sort(rng.choice(len(f), size=min(per_domain, len(f)), replace=False)))
        feats.append(f.detach().float().cpu().reshape(len(f), -1)[idx])
        domains += [domain] * len(idx)
        if labels is not None:
            labs.append(labels[domain].detach().cpu()[idx])
    return torch.cat(feats), domains, (torch.cat(labs) if labels is not None else None)


def embed(features: Tensor, seed: int = 0, max_iter: int = MAX_ITER) -> np.ndarray:
    """2-D t-SNE of ``features`` (PCA-initialised, seeded; PCA to :data:`PCA_DIMS` dims first if wider)."""
    # Imported here, for start-up time: scikit-learn loads only when a t-SNE is computed.
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = features.numpy().astype(np.float32)
    if x.shape[1] > PCA_DIMS and len(x) > PCA_DIMS:
        x = PCA(n_components=PCA_DIMS, random_state=seed).fit_transform(x)
    perplexity = min(30.0, (len(x) - 1) / 3)  # t-SNE needs perplexity < n_samples
    tsne = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity, max_iter=max_iter)
    return tsne.fit_transform(x)


def tsne_plot(before: Mapping[str, Tensor], after: Mapping[str, Tensor], path: Path | str,
              labels: Mapping[str, Tensor] | None = None, per_domain: int = 1000, seed: int = 0,
              max_iter: int = MAX_ITER) -> None:
    """Two t-SNE panels (before adaptation | after adaptation), coloured by domain, marker by class.

    ``before``/``after`` map "source"/"target" to features of the same images: after source
    pretraining and at the end of adaptation. ``labels`` (same keys) are only drawn, never fitted.
    """
    # Imported here, for start-up time: matplotlib loads only when a figure is drawn.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from threadpoolctl import threadpool_limits

    if set(before) != set(after):
        raise ValueError(f"before has domains {sorted(before)}, after has {sorted(after)}")
    domain_order = list(before)
    panels = [subsample(before, labels, per_domain, seed),
              subsample({d: after[d] for d in domain_order}, labels, per_domain, seed)]
    # One thread: on a busy 2-core machine sklearn's two-thread t-SNE took 2x the wall time and
    # 2.6x the CPU time of one thread (its OpenMP threads spin-wait).
    with threadpool_limits(1):
        embeddings = [embed(x, seed, max_iter) for x, _, _ in panels]

    fig = Figure(figsize=(12, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    colours = {d: DOMAIN_COLOURS.get(d, f"C{k + 2}") for k, d in enumerate(domain_order)}
    classes: list[int] = []
    titles = ("before adaptation (after source pretraining)", "after adaptation")
    for i, (title, (_, domains, labs), xy) in enumerate(zip(titles, panels, embeddings)):
        dom = np.array(domains)
        lab = labs.numpy() if labs is not None else np.zeros(len(dom), dtype=int)
        classes = sorted(set(lab.tolist()))
        ax = fig.add_subplot(1, 2, i + 1)
        for d in domain_order:
            for k, c in enumerate(classes):
                keep = (dom == d) & (lab == c)
                ax.scatter(xy[keep, 0], xy[keep, 1], s=8, alpha=0.6, linewidths=0, c=colours[d],
                           marker=CLASS_MARKERS[k % len(CLASS_MARKERS)])
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], marker="o", linestyle="", color=colours[d], label=d) for d in domain_order]
    if labels is not None:
        handles += [Line2D([], [], marker=CLASS_MARKERS[k % len(CLASS_MARKERS)], linestyle="", color="grey",
                           label=f"class {c}") for k, c in enumerate(classes)]
    fig.legend(handles=handles, loc="outside right center", fontsize="small")
    replace_atomically(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def add_to_projector(writer: Any, features: Tensor, domains: Sequence[str], labels: Tensor | Sequence[int] | None,
                     tag: str, step: int) -> None:
    """Put feature rows into a TensorBoard ``SummaryWriter``'s projector with (domain, class) metadata.

    Use :func:`subsample` to get the points tsne_plot draws: ``add_to_projector(w, *subsample(f, y), ...)``.
    """
    if len(domains) != len(features) or (labels is not None and len(labels) != len(features)):
        raise ValueError(f"{len(features)} feature rows but {len(domains)} domains"
                         + ("" if labels is None else f" and {len(labels)} labels"))
    mat = features.detach().float().cpu().reshape(len(features), -1)
    if labels is None:
        writer.add_embedding(mat, metadata=list(domains), tag=tag, global_step=step)
        return
    classes = labels.tolist() if isinstance(labels, Tensor) else list(labels)
    metadata = [[d, str(c)] for d, c in zip(domains, classes)]
    writer.add_embedding(mat, metadata=metadata, metadata_header=["domain", "class"], tag=tag, global_step=step)

"""Subspace alignment.

Fernando et al., "Unsupervised Visual Domain Adaptation Using Subspace Alignment", ICCV 2013.
PCA bases P_s, P_t (d columns each) of centred source and target features; M = P_s^T P_t.
Source features map to (f_s - mu_s) P_s M, target features to (f_t - mu_t) P_t. The classifier
is the paper's: each target sample takes the label of its nearest aligned source sample
(``classifier: nn``), or a linear head trained on the aligned source features (``linear``).

Two choices the paper leaves to its data, both off by default:

- ``standardize``: z-score each domain's features (each dimension to mean 0, standard deviation 1,
  with that domain's own statistics) before its PCA, as reference implementations do
  (libTLDA's ``suba``: ``pca(zscore(X))``).
- ``blocks``: fit on the outputs of these extractor blocks, side by side (``[conv2, bottleneck]``:
  LeNet's conv2 maps next to the top features), rather than on the top alone. Fernando et al.
  align hand-made descriptors; in a network trained on the source alone the lower layers are the
  more generic ones (Yosinski et al., "How transferable are features in deep neural networks?",
  NeurIPS 2014), the top ones the more discriminative. The stage puts those blocks' outputs in the
  model's place of its features (``da.models.backbones.BlockOutputs``).

Its premise is a linear shift between the domains' principal subspaces. On the features of a
source-pretrained LeNet, MNIST -> USPS, the subspaces are already close (M is near the
identity): most of its gain over the pretrained model comes from centring each domain on its
own mean and from the 1-NN classifier, little from M (README, Results, has the ablation).

A closed-form fit is a way of training, not a loss: the ``subspace`` stage fits the map on features of
the pretrained extractor, puts it in the model's ``transform`` slot and gives the model the head the
classifier needs; with ``classifier: linear`` it then trains that head for ``train.steps`` steps as
the ``adapt`` stage would (on the aligned features, no alignment loss). The adapter registry's
``subspace`` entry names this stage, so ``adapter: {name: subspace, dims: 50}`` runs it.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from da.adapters.base import Domain, check_choice
from da.domains import Domains
from da.errors import DAError
from da.models.backbones import BlockOutputs
from da.models.domain_norm import routed
from da.models.head import NearestNeighbourHead
from da.registry import register_stage
from da.stages.adapt import Adapt
from da.train.model import batched
from da.train.run import Run



def pca_basis(f: Tensor, dims: int) -> tuple[Tensor, Tensor]:
    """Mean and the top ``dims`` principal directions (as columns) of the rows of ``f``."""
    mean = f.mean(0)
    _, _, vh = torch.linalg.svd(f - mean, full_matrices=False)
    return mean, vh[:dims].T.contiguous()


class SubspaceAlignment(nn.Module):
    """Subspace alignment (Fernando et al. 2013): closed-form map of the source PCA basis onto the
    target's; the model's ``transform`` slot, ``forward(f, domain)``."""

    def __init__(self, feature_dim: int, dims: int = 64, classifier: str = "nn", standardize: bool = False) -> None:
        """``classifier``: ``nn``, 1-nearest-neighbour over the aligned source features (the paper's;
        nothing left to train, so ``train.steps: 0``), or ``linear``, a head trained on them.
        ``standardize``: z-score each domain before its PCA."""
        super().__init__()
        if not 0 < dims <= feature_dim:
            raise DAError(f"subspace: dims={dims} must be between 1 and the feature width {feature_dim}")
        check_choice("subspace", "classifier", classifier, ("nn", "linear"))
        self.dims = dims
        self.classifier = classifier
        self.standardize = standardize
        self._source_bank: tuple[Tensor, Tensor] | None = None  # aligned source features and labels, for init_head
        for name, shape in [("mean_s", (feature_dim,)), ("mean_t", (feature_dim,)), ("basis_s", (feature_dim, dims)),
                            ("basis_t", (feature_dim, dims)), ("alignment", (dims, dims))]:
            self.register_buffer(name, torch.zeros(shape))
        self.register_buffer("std_s", torch.ones(feature_dim))
        self.register_buffer("std_t", torch.ones(feature_dim))
        self.register_buffer("fitted", torch.tensor(False))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        for name in ("std_s", "std_t"):  # checkpoints written before ``standardize`` existed: scale 1
            state_dict.setdefault(prefix + name, torch.ones_like(getattr(self, name)))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def fit(self, f_s: Tensor, f_t: Tensor, y_s: Tensor | None = None) -> None:
        n = min(len(f_s), len(f_t))
        if n < self.dims:
            raise DAError(f"subspace: {n} samples cannot give {self.dims} PCA directions; lower adapter.dims")
        f_s, f_t = f_s.double(), f_t.double()
        std_s, std_t = self._scale(f_s), self._scale(f_t)
        mean_s, p_s = pca_basis(f_s / std_s, self.dims)
        mean_t, p_t = pca_basis(f_t / std_t, self.dims)
        for buffer, value in ((self.mean_s, mean_s * std_s), (self.mean_t, mean_t * std_t), (self.std_s, std_s),
                              (self.std_t, std_t), (self.basis_s, p_s), (self.basis_t, p_t),
                              (self.alignment, p_s.T @ p_t)):  # M = P_s^T P_t
            buffer.copy_(value)
        self.fitted.fill_(True)
        if self.classifier == "nn" and y_s is not None:
            self._source_bank = (self(f_s.to(self.mean_s.dtype), "source"), y_s)

    def _scale(self, f: Tensor) -> Tensor:
        """Per-dimension standard deviations (``standardize``), else ones. A dimension constant over a
        domain (a ReLU that never fires) keeps scale 1: it stays 0 once centred."""
        if not self.standardize:
            return torch.ones_like(f[0])
        std = f.std(0)
        return std.where(std > 1e-8, 1.0)

    def forward(self, f: Tensor, domain: Domain) -> Tensor:
        if not bool(self.fitted):
            raise RuntimeError("SubspaceAlignment.transform called before fit")
        if domain == "source":
            return (f - self.mean_s) / self.std_s @ self.basis_s @ self.alignment
        return (f - self.mean_t) / self.std_t @ self.basis_t

    def init_head(self, head: nn.Module) -> nn.Module:
        """The 1-NN head over the aligned source features (``nn``; empty when a checkpoint will fill it), or
        for ``linear`` the pretrained linear head (W, b) expressed in the aligned coordinates: W P_t and b + W mu_s
        (a fresh linear head when the features are standardized or come from other blocks).

        Aligned coordinates are target-basis coordinates, so a source feature then scores
        W P_t P_t^T P_s P_s^T (f - mu_s) + W mu_s + b and a target feature W P_t P_t^T (f - mu_t) + W mu_s + b:
        the pretrained head on centred, projected features. Training starts from the pretrained
        classifier instead of from scratch (a fresh head on frozen features underfits in a few
        thousand steps).
        """
        if self.classifier == "nn":
            bank, labels = self._source_bank if self._source_bank is not None else (None, None)
            return NearestNeighbourHead(head.out_features, bank, labels).to(self.mean_s.device)
        if not isinstance(head, nn.Linear) or self.standardize or head.in_features != len(self.mean_s):
            return nn.Linear(self.dims, head.out_features).to(head.weight.device)  # the pretrained head reads other features
        new = nn.Linear(self.dims, head.out_features).to(head.weight.device)
        with torch.no_grad():
            new.weight.copy_(head.weight @ self.basis_t)
            new.bias.copy_(head.bias + head.weight @ self.mean_s)
        return new


def fit_draw(domains: Domains, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """The source and target train indices (``n`` of each, seeded) the map is fitted on."""
    g = torch.Generator().manual_seed(seed)
    pick = lambda split: torch.randperm(len(split), generator=g)[:n]
    return pick(domains.source_train), pick(domains.target_train)


@register_stage("subspace")
class Subspace(Adapt):
    """Fit subspace alignment on ``train.fit_samples`` extractor features per domain, then (``classifier:
    linear``) train the head on the aligned features for ``train.steps`` steps."""

    label = "subspace alignment"
    description = "subspace alignment: closed-form map between PCA bases, then the head (Fernando 2013)"
    fills_slots = ("transform",)

    def __init__(self, dims: int = 64, classifier: str = "nn", standardize: bool = False,
                 blocks: list[str] | None = None) -> None:
        """``blocks``: the extractor blocks whose outputs to align (None: the extractor's output)."""
        super().__init__()
        check_choice("subspace", "classifier", classifier, ("nn", "linear"))
        self.dims, self.classifier, self.standardize, self.blocks = dims, classifier, standardize, list(blocks or [])

    def check(self, config: Any) -> None:
        super().check(config)
        if self.classifier == "nn" and config.train.steps > 0:
            raise DAError(f"subspace's classifier: nn (1-nearest-neighbour) has nothing to train, so train.steps "
                          f"must be 0, not {config.train.steps}; set train.steps: 0, or classifier: linear")

    def fill_slots(self, run: "Run", fresh: bool) -> None:
        m = run.model
        if self.blocks:
            m.lower = BlockOutputs(m.extractor, self.blocks)
        width = self._width(run)
        m.transform = SubspaceAlignment(width, self.dims, self.classifier, self.standardize).to(run.device)
        if fresh:
            self._fit(run, m.transform)
        m.head = m.transform.init_head(m.head)

    def _width(self, run: "Run") -> int:
        m = run.model
        if m.lower is None:
            return m.extractor.out_features
        was_training = m.extractor.training
        with torch.no_grad():  # the blocks' output width, from two images in eval mode (batch norm needs no batch)
            width = m.lower.eval()(run.domains.source_train.images(torch.arange(2)).to(run.device)).shape[1]
        m.extractor.train(was_training)
        return width

    def _fit(self, run: "Run", aligner: SubspaceAlignment) -> None:
        d, m = run.domains, run.model
        run.start_target_norms()
        source, target = fit_draw(d, run.config.train.fit_samples, run.config.seed)
        was_training = m.extractor.training
        m.extractor.eval()
        with torch.no_grad():  # images loaded a slice at a time: a file-backed split never sits whole in memory
            with routed(m.domain_norms, "target"):
                target_features = batched(lambda i: m.features(d.target_train.images(i)), target)
            aligner.fit(batched(lambda i: m.features(d.source_train.images(i)), source), target_features,
                        y_s=d.source_train.y[source.to(d.source_train.y.device)])
        m.extractor.train(was_training)

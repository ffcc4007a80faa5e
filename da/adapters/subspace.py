"""Subspace alignment.

Fernando et al., "Unsupervised Visual Domain Adaptation Using Subspace Alignment", ICCV 2013.
PCA bases P_s, P_t (d columns each) of centred source and target features; M = P_s^T P_t.
Source features map to (f_s - mu_s) P_s M, target features to (f_t - mu_t) P_t, and the head
is trained on the aligned source features.
"""
from __future__ import annotations

import torch
from torch import Tensor

from da.adapters.base import Adapter, Domain
from da.errors import DAError
from da.registry import register_adapter


def pca_basis(f: Tensor, dims: int) -> tuple[Tensor, Tensor]:
    """Mean and the top ``dims`` principal directions (as columns) of the rows of ``f``."""
    mean = f.mean(0)
    _, _, vh = torch.linalg.svd(f - mean, full_matrices=False)
    return mean, vh[:dims].T.contiguous()


@register_adapter("subspace")
class SubspaceAlignment(Adapter):
    """Subspace alignment (Fernando et al. 2013): closed-form map of the source PCA basis onto the target's."""

    description = "subspace alignment: closed-form map between PCA bases (Fernando 2013)"
    aligns_by_gradient = False
    needs_fit = True

    def __init__(self, feature_dim: int, dims: int = 64) -> None:
        super().__init__()
        if not 0 < dims <= feature_dim:
            raise DAError(f"subspace: dims={dims} must be between 1 and the feature width {feature_dim}")
        self.dims = dims
        for name, shape in [("mean_s", (feature_dim,)), ("mean_t", (feature_dim,)),
                            ("source_map", (feature_dim, dims)), ("target_basis", (feature_dim, dims))]:
            self.register_buffer(name, torch.zeros(shape))
        self.register_buffer("fitted", torch.tensor(False))

    def fit(self, f_s: Tensor, f_t: Tensor) -> None:
        n = min(len(f_s), len(f_t))
        if n < self.dims:
            raise DAError(f"subspace: {n} samples cannot give {self.dims} PCA directions; lower adapter.dims")
        mean_s, p_s = pca_basis(f_s.double(), self.dims)
        mean_t, p_t = pca_basis(f_t.double(), self.dims)
        alignment = p_s.T @ p_t  # M = P_s^T P_t
        self.mean_s.copy_(mean_s)
        self.mean_t.copy_(mean_t)
        self.source_map.copy_(p_s @ alignment)
        self.target_basis.copy_(p_t)
        self.fitted.fill_(True)

    def transform(self, f: Tensor, domain: Domain) -> Tensor:
        if not bool(self.fitted):
            raise RuntimeError("SubspaceAlignment.transform called before fit")
        if domain == "source":
            return (f - self.mean_s) @ self.source_map
        return (f - self.mean_t) @ self.target_basis

    def out_features(self, feature_dim: int) -> int:
        return self.dims

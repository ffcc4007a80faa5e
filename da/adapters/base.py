"""The adapter interface: what sits between the feature extractor and the task head."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Literal

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from da.train.model import Model

Domain = Literal["source", "target"]


@dataclass
class Update:
    """One optimisation sub-step: the loop checks ``loss`` is finite, zeroes the gradients of the
    optimizer named ``optimizer`` (or of each of several names: one loss that steps two optimizers,
    as MCD's step A does), back-propagates ``loss`` and steps the optimizer(s)."""

    loss: Tensor
    optimizer: str | tuple[str, ...] = "main"
    #: Scalars for TensorBoard (tag -> value), filled only on logging steps.
    scalars: dict[str, Any] = field(default_factory=dict)

    def optimizer_names(self) -> tuple[str, ...]:
        return (self.optimizer,) if isinstance(self.optimizer, str) else tuple(self.optimizer)


@dataclass
class ParamGroup:
    """Parameters an optimizer trains, under a name (for ``lr/<name>`` on TensorBoard), at
    ``lr_mult`` times the stage's learning rate."""

    name: str
    module: nn.Module
    lr_mult: float = 1.0


class Adapter(nn.Module):
    """Aligns source and target features.

    Subclasses set ``description`` (one line, shown by ``da adapters``) and override ``loss``
    (gradient-based alignment) or ``fit``/``transform`` (closed-form alignment). Hyperparameters
    are constructor keyword arguments with defaults; ``feature_dim`` and ``num_classes`` are
    passed in by the loop when the constructor names them. The loop also reads an argument named
    ``blocks`` (extractor block names, as subspace alignment takes): the features the adapter and
    the head then see are those blocks' outputs side by side, and ``feature_dim`` is their width.
    """

    description: ClassVar[str] = ""
    #: True when ``loss`` sends a gradient into the features (checked for every adapter in tests).
    aligns_by_gradient: ClassVar[bool] = True
    #: The domains whose features that gradient reaches; a loss on target predictions alone
    #: (entropy minimisation, MCC, BNM) declares ``("target",)``.
    gradient_domains: ClassVar[tuple[Domain, ...]] = ("source", "target")
    #: True when the loop must call ``fit`` on extractor features before the adaptation stage.
    needs_fit: ClassVar[bool] = False
    #: Under torch.distributed, a loss on batch statistics (MMD's kernels, CORAL's covariances) sees
    #: each rank's own batch by default; True gathers every rank's features and predictions first, so
    #: the loss sees the global batch (one all-gather per step).
    global_batch: ClassVar[bool] = False
    #: Images per domain its loss needs in a batch (a covariance or an unbiased MMD needs 2).
    min_batch_size: ClassVar[int] = 1

    def loss(
        self,
        f_s: Tensor,
        f_t: Tensor,
        *,
        logits_s: Tensor,
        logits_t: Tensor,
        y_s: Tensor,
        progress: float,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Alignment loss to add to the task loss, and scalars to log. ``progress`` runs 0 -> 1."""
        return f_s.new_zeros(()), {}

    def fit(self, f_s: Tensor, f_t: Tensor, y_s: Tensor | None = None) -> None:
        """Closed-form fitting on extractor features of both domains (``y_s``: the source rows' labels,
        for a head built from them); default: nothing."""

    def transform(self, f: Tensor, domain: Domain) -> Tensor:
        """Features as the head sees them; default: unchanged."""
        return f

    def encoder(self, domain: Domain) -> nn.Module | None:
        """An encoder of this adapter's own for ``domain``'s images (ADDA's target encoder), used in
        place of the shared extractor for that domain; default: None (the shared extractor)."""
        return None

    def optimizers(self, model: "Model") -> dict[str, list[ParamGroup]] | None:
        """For a method that owns its update (ADDA, MCD): its optimizers by name, each a list of
        parameter groups; the adaptation stage then runs ``update`` instead of the joint step.
        Default: None (one optimizer over extractor, head and adapter; the loss is ``loss``)."""
        return None

    def update(self, model: "Model", batch: dict[str, tuple[Tensor, Tensor]], *, progress: float,
               log: bool) -> Iterator[Update]:
        """A method's own sub-steps for one training step, over the step's ``batch`` (``source``:
        images and labels, ``target``: images, labels hidden): yield an ``Update`` per sub-step; the
        loop back-propagates and steps its optimizer before resuming the generator, so a later
        sub-step sees the parameters the earlier ones changed."""
        raise NotImplementedError(f"{type(self).__name__} declares optimizers() but no update()")

    def out_features(self, feature_dim: int) -> int:
        """Width of ``transform``'s output for extractor features of width ``feature_dim``."""
        return feature_dim

    def trains_head(self) -> bool:
        """False when the head ``init_head`` builds has nothing to train (the adaptation stage must have 0 steps)."""
        return True

    def init_head(self, head: nn.Module) -> nn.Module:
        """The head to train after ``fit``, given the pretrained one; default: a fresh linear head."""
        width = self.out_features(head.in_features)
        return nn.Linear(width, head.out_features).to(next(head.parameters()).device)


def summary_line(adapter_cls: type) -> str:
    """The one-line description of an adapter class: ``description``, else its docstring's first line."""
    if getattr(adapter_cls, "description", ""):
        return adapter_cls.description
    doc = (adapter_cls.__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""


LAYERS = ("features", "logits", "both")


def layer_pairs(layer: str, f_s: Tensor, f_t: Tensor, logits_s: Tensor, logits_t: Tensor) -> list[tuple[Tensor, Tensor]]:
    """The (source, target) activations a statistic-matching adapter aligns.

    Deep CORAL aligns the classifier's outputs (fc8, Sun & Saenko 2016); DAN aligns features and
    outputs together (fc6-fc8, Long et al. 2015).
    """
    pairs = {"features": [(f_s, f_t)], "logits": [(logits_s, logits_t)],
             "both": [(f_s, f_t), (logits_s, logits_t)]}
    return pairs[layer]


def check_choice(adapter: str, key: str, value: str, choices: tuple[str, ...]) -> None:
    from da.errors import DAError

    if value not in choices:
        raise DAError(f"{adapter}: {key} must be one of {', '.join(choices)}, got {value!r}")


@torch.no_grad()
def binary_accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Share of ``logits > 0`` that match 0/1 ``labels``."""
    return ((logits > 0).float() == labels).float().mean()

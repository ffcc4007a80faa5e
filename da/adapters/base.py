"""The adapter interface: a loss that aligns source and target features, and its metadata.

An adapter is what Transfer-Learning-Library's loss modules are: tensors in, a loss and scalars out,
nothing of the loop. A method that trains in its own way (a closed-form fit, ADDA's alternating
encoder, MCD's three sub-steps, self-training, SHOT) is a stage (``da.stages``); the adapter registry
still lists it under the name users know, as a ``TrainedByStage`` entry that names its stage.
"""
from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from da.config.search_space import Param
from da.errors import DAError

Domain = Literal["source", "target"]

#: Methods of the adapter interface before stages owned the methods that train in their own way; a
#: plugin adapter that still defines one is refused with a pointer to the stage interface.
RETIRED_METHODS = ("fit", "transform", "encoder", "optimizers", "update", "out_features", "trains_head", "init_head")


class Adapter(nn.Module):
    """Aligns source and target features: ``loss`` returns a loss to add to the task loss, and scalars.

    Subclasses set ``description`` (one line, shown by ``da adapters``) and override ``loss``.
    Hyperparameters are constructor keyword arguments with defaults; ``feature_dim`` and
    ``num_classes`` are passed in by the loop when the constructor names them.
    """

    description: ClassVar[str] = ""
    #: ``da tune``'s ranges for its constructor's hyperparameters (``da.config.search_space``),
    #: keyed by argument name; the run's config gives the defaults.
    search_space: ClassVar[dict[str, Param]] = {}
    #: True when ``loss`` sends a gradient into the features (checked for every adapter in tests);
    #: False for a loss that is constant in them (source_only's zero).
    aligns_by_gradient: ClassVar[bool] = True
    #: The domains whose features that gradient reaches; a loss on target predictions alone
    #: (entropy minimisation, MCC, BNM) declares ``("target",)``.
    gradient_domains: ClassVar[tuple[Domain, ...]] = ("source", "target")
    #: Under torch.distributed, a loss on batch statistics (MMD's kernels, CORAL's covariances) sees
    #: each rank's own batch by default; True gathers every rank's features and predictions first, so
    #: the loss sees the global batch (one all-gather per step).
    global_batch: ClassVar[bool] = False
    #: Images per domain its loss needs in a batch (a covariance or an unbiased MMD needs 2).
    min_batch_size: ClassVar[int] = 1
    #: The label-set settings it is meant for (``da.data.label_sets``). A closed-set method also runs
    #: in the partial setting; in the open ones it needs ``model.unknown_threshold`` to predict unknown.
    settings: ClassVar[tuple[str, ...]] = ("closed", "partial")
    #: Extra columns of the task head: OSBP's unknown class (1) is the last.
    head_extra: ClassVar[int] = 0
    #: True when the head's logits of the target batch reach the adapter through a gradient reversal
    #: (OSBP's boundary: the head minimises the loss, the extractor maximises it).
    reversed_target_logits: ClassVar[bool] = False

    def unknown(self, z: Tensor, logits: Tensor) -> Tensor | None:
        """Where the adapter calls an image unknown (open-set methods with a detector of their own,
        OVANet's one-vs-all heads), from the head's input ``z`` and its logits; None: it has no say."""
        return None

    def class_weight(self) -> Tensor | None:
        """Per-class weights of the source cross-entropy (PADA's, from target predictions); None: unweighted."""
        return None

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
        raise NotImplementedError(f"{type(self).__name__} must define loss()")


class TrainedByStage:
    """A registry entry for a method that trains in its own way: ``stage`` names the registered stage
    that trains it, and the config's ``adapter`` keys are that stage's settings.

    ``adapter: {name: adda}`` keeps working: the run lists the stage in place of ``adapt`` (or a
    config's ``stages`` list must name it). Such an entry has no loss, so it cannot join an adapter
    list, and the loop's joint stages see a zero alignment loss.
    """

    description: ClassVar[str] = ""
    stage: ClassVar[str] = ""
    #: The metadata of an adapter, for a method with no loss: none reaches the features; its stage
    #: checks its own batches.
    aligns_by_gradient: ClassVar[bool] = False
    gradient_domains: ClassVar[tuple[Domain, ...]] = ()
    global_batch: ClassVar[bool] = False
    min_batch_size: ClassVar[int] = 1


def trained_by_stage(entry: object) -> str | None:
    """The stage that trains a registry entry, or None for an adapter (a loss)."""
    return entry.stage if isinstance(entry, type) and issubclass(entry, TrainedByStage) else None


def check_adapter_class(name: str, cls: type) -> None:
    """Refuse, in one line, an adapter class written for the retired interface (its own update or fit)."""
    if not isinstance(cls, type) or not issubclass(cls, (Adapter, TrainedByStage)):
        raise DAError(f"adapter {name!r} is registered as {cls!r}, which is neither an Adapter subclass (a loss) nor a "
                      f"TrainedByStage entry; see docs/adapters.md")
    old = [m for m in RETIRED_METHODS if issubclass(cls, Adapter) and any(m in vars(k) for k in cls.__mro__[:-1]
                                                                           if k not in (Adapter, nn.Module))]
    if old:
        raise DAError(f"adapter {name!r} defines {', '.join(f'{m}()' for m in old)}, which adapters no longer have: an "
                      f"adapter is a loss; a method that trains in its own way is a stage (@register_stage, "
                      f"docs/stages.md) named by a TrainedByStage entry (docs/adapters.md)")


def summary_line(adapter_cls: type) -> str:
    """The one-line description of an adapter class: ``description``, else its docstring's first line."""
    if adapter_cls.description:
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
    if value not in choices:
        raise DAError(f"{adapter}: {key} must be one of {', '.join(choices)}, got {value!r}")


@torch.no_grad()
def binary_accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Share of ``logits > 0`` that match 0/1 ``labels``."""
    return ((logits > 0).float() == labels).float().mean()

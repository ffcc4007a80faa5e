"""The model a run trains (extractor, adapter, head) and its evaluation; ``da.composition.model``
builds it from a config."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from da.adapters.base import Adapter
from da.data import DataSplit
from da.domains import Domains
from da.models.domain_norm import DomainBatchNorm, routed
from da.models.unknown import decide
from da.train.label_metrics import open_set_metrics
from da.validators import DEFAULT, ScoringInputs, needs, score
from da.validators.inputs import SOURCE_FEATURES

EVAL_BATCH = 2000


@torch.no_grad()
def predictions(predict: Callable[[Tensor], Tensor], split: DataSplit, batch_size: int = EVAL_BATCH) -> tuple[Tensor, Tensor]:
    """``predict`` over every image of ``split`` in order: (outputs, labels)."""
    outs, labels = [], []
    for x, y in split.batches(batch_size):
        outs.append(predict(x))
        labels.append(y)
    return torch.cat(outs), torch.cat(labels)


@torch.no_grad()
def accuracy(predict: Callable[[Tensor], Tensor], split: DataSplit, batch_size: int = EVAL_BATCH) -> float:
    correct = 0
    for x, y in split.batches(batch_size):
        correct += (predict(x).argmax(1) == y.to(x.device)).sum().item()
    return correct / max(len(split), 1)


@torch.no_grad()
def confusion_matrix(classify: Callable[[Tensor], Tensor], split: DataSplit, num_classes: int) -> Tensor:
    """Counts of (true class, predicted label) over ``split``: row i holds the images of class i.
    ``classify`` maps images to labels (``Model.labels``)."""
    labels, y = predictions(classify, split)
    counts = torch.bincount(y.to(labels.device) * num_classes + labels, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).cpu()


def per_class_accuracy(confusion: Tensor) -> list[float | None]:
    """Each class's recall from a confusion matrix (None for a class the split lacks)."""
    totals = confusion.sum(1)
    return [round(confusion[i, i].item() / n, 4) if n else None for i, n in enumerate(totals.tolist())]


@torch.no_grad()
def batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = EVAL_BATCH) -> Tensor:
    """``fn(x)`` computed over slices of ``batch_size`` rows."""
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


@dataclass
class Model:
    """Extractor, head and adapter (a loss), and the named slots a stage may fill: what a checkpoint's
    weights restore.

    Slots (``SLOTS``): ``encoders``, an encoder of a domain's own in place of the shared extractor
    (ADDA's target encoder); ``transform``, a map between the features and the head, ``transform(f,
    domain)`` (subspace alignment's); ``head_2``, a second classifier (MCD's); ``unknown``, a rule
    that calls a target image unknown (SHOT's open-set entropy split). A stage declares the
    slots it fills (``Stage.fills_slots``) and fills them in ``Stage.fill_slots``.
    """

    extractor: nn.Module
    head: nn.Module
    adapter: Adapter
    #: What the transform reads when it names blocks of the extractor (subspace alignment's
    #: ``blocks``): their outputs side by side; None: the extractor's output.
    lower: nn.Module | None = None
    #: ``train.batch_norm: per_domain``: the extractor's batch-norm layers, one per domain each.
    domain_norms: list[DomainBatchNorm] = field(default_factory=list)
    encoders: dict[str, nn.Module] = field(default_factory=dict)
    transform: nn.Module | None = None
    head_2: nn.Module | None = None
    #: Open-set and universal settings: the label of "unknown" (the number of source classes); the
    #: ``unknown`` slot, a rule (``da.models.unknown``) a stage fits (SHOT's entropy split, checkpointed);
    #: ``confidence``, the rule of ``model.unknown_threshold`` (rebuilt from the config, not saved);
    #: the adapter may call images unknown too (``Adapter.unknown``).
    unknown_label: int | None = None
    unknown: nn.Module | None = None
    confidence: nn.Module | None = None

    def features(self, x: Tensor) -> Tensor:
        """The features the adapter and the adaptation stage's head read."""
        return (self.extractor if self.lower is None else self.lower)(x)

    def encode(self, x: Tensor, domain: str) -> Tensor:
        """Features of ``domain``'s images: that domain's own encoder if a stage gave it one (ADDA's
        target encoder), else the shared extractor's."""
        encoder = self.encoders.get(domain)
        return self.features(x) if encoder is None else encoder(x)

    def adapt_features(self, f: Tensor, domain: str) -> Tensor:
        """Features as the head reads them: through the ``transform`` slot when a stage filled it."""
        return f if self.transform is None else self.transform(f, domain)

    def embed(self, x: Tensor, domain: str) -> Tensor:
        """Adapted features of ``domain``'s images: with per-domain batch norm, that domain's statistics."""
        with routed(self.domain_norms, domain):
            return self.adapt_features(self.encode(x, domain), domain)

    def predict(self, domain: str, adapted: bool) -> Callable[[Tensor], Tensor]:
        if not adapted:  # before the adaptation stage the head reads the extractor's features directly
            return lambda x: self.head(self.extractor(x))
        return lambda x: self.head(self.embed(x, domain))

    def unknown_mask(self, z: Tensor, logits: Tensor) -> Tensor | None:
        """Where the adapter or the ``unknown`` rule calls an image unknown (None: nothing can)."""
        if self.unknown_label is None:
            return None
        rules = [rule(z, logits) for rule in (self.unknown, self.confidence) if rule is not None]
        masks = [m for m in (self.adapter.unknown(z, logits), *rules) if m is not None]
        return torch.stack(masks).any(0) if masks else None

    def labels(self, domain: str, adapted: bool) -> Callable[[Tensor], Tensor]:
        """Images -> labels: the head's argmax, or ``unknown_label`` where an open-set rule says so."""
        def classify(x: Tensor) -> Tensor:
            z = self.embed(x, domain) if adapted else self.extractor(x)
            logits = self.head(z)
            return decide(logits, self.unknown_label, self.unknown_mask(z, logits))
        return classify

    def parts(self) -> dict[str, nn.Module]:
        """Every module that holds weights, by the name its checkpoint entry has."""
        out = {"extractor": self.extractor, "head": self.head, "adapter": self.adapter}
        out.update({f"encoder.{domain}": encoder for domain, encoder in self.encoders.items()})
        out.update({name: m for name, m in (("transform", self.transform), ("head_2", self.head_2),
                                            ("unknown", self.unknown)) if m is not None})
        return out

    def modules(self) -> tuple[nn.Module, ...]:
        return tuple(self.parts().values())

    def state_dict(self) -> dict[str, Any]:
        return {name: module.state_dict() for name, module in self.parts().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Weights of every part; the slots must have their shape already (``Stage.fill_slots``)."""
        for name, module in self.parts().items():
            module.load_state_dict(state[name])

    @contextmanager
    def eval_mode(self) -> Iterator[None]:
        """Eval mode inside, then every submodule's own mode back (frozen blocks stay in eval mode)."""
        modes = [(sub, sub.training) for m in self.modules() for sub in m.modules()]
        for m in self.modules():
            m.eval()
        try:
            yield
        finally:
            for sub, mode in modes:
                sub.training = mode

    def target_figures(self, domains: Domains, adapted: bool) -> dict[str, float]:
        """``target_test_acc`` (unknown counts as a class where the setting has it) and, in the open
        settings, OS, OS*, UNK and H-score (``da.train.label_metrics``)."""
        sets = domains.label_sets
        if sets is None or not sets.open:
            labels, y = predictions(self.labels("target", adapted), domains.target_test)
            return {"target_test_acc": (labels == y.to(labels.device)).sum().item() / max(len(y), 1)}
        confusion = confusion_matrix(self.labels("target", adapted), domains.target_test, sets.unknown + 1)
        figures = open_set_metrics(confusion, sets.target_indices()[:-1], sets.unknown)
        return {"target_test_acc": confusion.diagonal().sum().item() / max(confusion.sum().item(), 1), **figures}

    def evaluate(self, domains: Domains, adapted: bool = True) -> dict[str, float]:
        return self.evaluate_and_score(domains, adapted, scores=False)[0]

    @torch.no_grad()
    def evaluate_and_score(self, domains: Domains, adapted: bool = True, scores: bool = True,
                           validators: Sequence[str] = DEFAULT) -> tuple[dict[str, float], dict[str, float]]:
        """Accuracies on the labelled splits and, with ``scores``, the scores of ``validators``, which
        read no target label (``da.validators``; higher is better). Source validation is predicted
        once for both; source features and probe images are gathered only for validators that need them."""
        with self.eval_mode():
            source_logits, source_y = predictions(self.predict("source", adapted), domains.source_val)
            accs = {
                "source_val_acc": (source_logits.argmax(1) == source_y.to(source_logits.device)).sum().item()
                / max(len(domains.source_val), 1),
                "source_test_acc": accuracy(self.predict("source", adapted), domains.source_test),
                **self.target_figures(domains, adapted),
            }
            if not scores:
                return accs, {}
            target_features, _ = predictions(lambda x: self.embed(x, "target"), domains.target_probe)
            target_logits = batched(self.head, target_features)
            wanted = needs(validators)
            source_features = None
            if "source_features" in wanted:
                head = domains.source_val.subset(torch.arange(min(SOURCE_FEATURES, len(domains.source_val))))
                source_features = predictions(lambda x: self.embed(x, "source"), head)[0].float().cpu()
            probe, predict = domains.target_probe, self.predict("target", adapted)
            inputs = ScoringInputs(
                source_logits=source_logits.float().cpu(), source_labels=source_y.cpu(),
                target_logits=target_logits.float().cpu(), target_features=target_features.float().cpu(),
                source_features=source_features,
                target_images=probe.images if "target_images" in wanted else None,
                predict=(lambda x: predict(x).float()) if "target_images" in wanted else None)
            return accs, score(inputs, validators)

"""The model a run trains (extractor, adapter, head), how it is built from a config, and its evaluation."""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

import da.adapters  # noqa: F401  (registers the built-in adapters)
import da.models  # noqa: F401  (registers the backbones)
from da.adapters.base import Adapter
from da.config import LOOP_PROVIDED, Config
from da.data import DataSplit
from da.domains import Domains
from da.errors import DAError
from da.models import linear_head
from da.models.backbones import BlockOutputs, WithBottleneck
from da.models.domain_norm import DomainBatchNorm, per_domain, routed
from da.registry import ADAPTERS, BACKBONES

EVAL_BATCH = 2000


def build_adapter(config: Config, feature_dim: int, num_classes: int) -> Adapter:
    """Instantiate the configured adapter, passing ``feature_dim``/``num_classes`` if it takes them.

    An adapter list becomes a ``Composite`` of its parts, each built the same way.
    """
    from da.adapters.compose import Composite
    from da.config import AdapterConfig

    def one(spec: AdapterConfig, label: str) -> Adapter:
        cls = ADAPTERS.get(spec.name)
        takes = inspect.signature(cls).parameters
        provided = {"feature_dim": feature_dim, "num_classes": num_classes}
        kwargs = {k: v for k, v in provided.items() if k in takes and k in LOOP_PROVIDED}
        try:
            return cls(**kwargs, **spec.kwargs)
        except (TypeError, ValueError) as exc:  # a value of the right type that the adapter still refuses
            raise DAError(f"{label} rejected its arguments {spec.kwargs}: {exc}") from None

    from da.adapters.per_source import per_source

    spec = config.adapter
    if not spec.parts:
        return per_source(config.data.source, config.train.multi_source, lambda: one(spec, f"adapter {spec.name!r}"))
    return per_source(config.data.source, config.train.multi_source, lambda: Composite(
        [(p.name, one(p, f"adapter[{i}] ({p.name!r})"), p.weight) for i, p in enumerate(spec.parts)]))


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
def confusion_matrix(predict: Callable[[Tensor], Tensor], split: DataSplit, num_classes: int) -> Tensor:
    """Counts of (true class, predicted class) over ``split``: row i holds the images of class i."""
    logits, y = predictions(predict, split)
    counts = torch.bincount(y.to(logits.device) * num_classes + logits.argmax(1), minlength=num_classes * num_classes)
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
    """Extractor, adapter and head: what a checkpoint's weights restore."""

    extractor: nn.Module
    head: nn.Module
    adapter: Adapter
    #: What the adapter reads in the adaptation stage when it names blocks of the extractor
    #: (subspace alignment's ``blocks``): their outputs side by side; None: the extractor's output.
    lower: nn.Module | None = None
    #: ``train.batch_norm: per_domain``: the extractor's batch-norm layers, one per domain each.
    domain_norms: list[DomainBatchNorm] = field(default_factory=list)

    def features(self, x: Tensor) -> Tensor:
        """The features the adapter and the adaptation stage's head read."""
        return (self.extractor if self.lower is None else self.lower)(x)

    def encode(self, x: Tensor, domain: str) -> Tensor:
        """Features of ``domain``'s images: the adapter's own encoder for that domain if it has one
        (ADDA's target encoder), else the shared extractor's."""
        encoder = self.adapter.encoder(domain)
        return self.features(x) if encoder is None else encoder(x)

    def embed(self, x: Tensor, domain: str) -> Tensor:
        """Adapted features of ``domain``'s images: with per-domain batch norm, that domain's statistics."""
        with routed(self.domain_norms, domain):
            return self.adapter.transform(self.encode(x, domain), domain)

    def predict(self, domain: str, adapted: bool) -> Callable[[Tensor], Tensor]:
        if not adapted:  # before the adaptation stage the head reads the extractor's features directly
            return lambda x: self.head(self.extractor(x))
        return lambda x: self.head(self.embed(x, domain))

    def modules(self) -> tuple[nn.Module, ...]:
        return (self.extractor, self.head, self.adapter)

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

    def evaluate(self, domains: Domains, adapted: bool = True) -> dict[str, float]:
        return self.evaluate_and_score(domains, adapted, scores=False)[0]

    @torch.no_grad()
    def evaluate_and_score(self, domains: Domains, adapted: bool = True,
                           scores: bool = True) -> tuple[dict[str, float], dict[str, float]]:
        """Accuracies on the labelled splits and, with ``scores``, the model-selection scores that
        read no target label (``da.validators``; higher is better). Source validation is predicted
        once for both."""
        with self.eval_mode():
            source_logits, source_y = predictions(self.predict("source", adapted), domains.source_val)
            accs = {
                "source_val_acc": (source_logits.argmax(1) == source_y.to(source_logits.device)).sum().item()
                / max(len(domains.source_val), 1),
                "source_test_acc": accuracy(self.predict("source", adapted), domains.source_test),
                "target_test_acc": accuracy(self.predict("target", adapted), domains.target_test),
            }
            if not scores:
                return accs, {}
            target_features, _ = predictions(lambda x: self.embed(x, "target"), domains.target_probe)
            target_logits = batched(self.head, target_features)
        from da.validators import score

        return accs, score(source_logits, source_y.to(source_logits.device), target_logits, target_features)

    def load(self, state: dict[str, Any]) -> None:
        """Weights of a checkpoint; a closed-form adapter's head takes its fitted shape first."""
        self.extractor.load_state_dict(state["extractor"])
        self.adapter.load_state_dict(state["adapter"])
        if self.adapter.needs_fit and state.get("head_fitted", state["stage"] == "adapt"):
            self.head = self.adapter.init_head(self.head)
        self.head.load_state_dict(state["head"])


def build_model(config: Config, domains: Domains, device: torch.device) -> Model:
    shape = domains.source_train.input_shape
    extractor = BACKBONES.get(config.model.backbone).build(pretrained=config.model.pretrained, in_channels=shape[0])
    if config.model.weights:  # a local state dict, e.g. torchvision's resnet50-11ad3fa6.pth (offline)
        from da.models.pretrained import load_weights

        load_weights(extractor, config.model.weights)
    if config.model.bottleneck:
        extractor = WithBottleneck(extractor, config.model.bottleneck)
    norms = per_domain(extractor) if config.train.batch_norm == "per_domain" else []
    if config.train.batch_norm == "per_domain" and not norms:
        raise DAError(f"train.batch_norm: per_domain needs batch-norm layers, and backbone {config.model.backbone} "
                      "has none; add one with model.bottleneck (e.g. 256) or set train.batch_norm: shared")
    # Channels-last convolution weights run LeNet's training step ~1.7x faster on CPU (oneDNN).
    extractor = extractor.to(device).to(memory_format=torch.channels_last)
    head = linear_head(extractor.out_features, domains.num_classes).to(device)
    blocks = config.adapter.blocks()
    if not blocks:
        return Model(extractor, head, build_adapter(config, extractor.out_features, domains.num_classes).to(device),
                     domain_norms=norms)
    lower = BlockOutputs(extractor, blocks)
    was_training = extractor.training
    with torch.no_grad():  # the blocks' output width, from two images in eval mode (batch norm needs no batch)
        width = lower.eval()(domains.source_train.images(torch.arange(2)).to(device)).shape[1]
    extractor.train(was_training)
    return Model(extractor, head, build_adapter(config, width, domains.num_classes).to(device), lower, norms)

"""The checks a label-set shift needs (``da.data.label_sets``), made before a run folder exists, and the
model's share of it: its head's width, its ``unknown`` label and rule.

In the open settings (open-set, universal) something must predict "unknown": an open-set adapter
(``osbp``, ``ovanet``), a stage that does (SHOT's open-set variant), or ``model.unknown_threshold``
(a confidence threshold on a closed-set model, the baseline of open-set papers). A method meant only
for the open settings is refused in the closed and partial ones, where nothing is unknown.
"""
from __future__ import annotations

from typing import Any

from da.config import Config
from da.data.label_sets import OPEN_SETTINGS
from da.domains import Domains
from da.errors import DAError
from da.registry import ADAPTERS
from da.models.unknown import ConfidenceRule
from da.train.model import Model


CLOSED_SET = ("closed", "partial")


def _entries(config: Config) -> list[Any]:
    spec = config.adapter
    return [ADAPTERS.get(p.name) for p in spec.parts] if spec.parts else [ADAPTERS.get(spec.name)]


def adapter_settings(config: Config) -> tuple[str, ...]:
    """The settings the configured adapter (or adapter list: any part's) is meant for."""
    return tuple(dict.fromkeys(s for e in _entries(config) for s in getattr(e, "settings", CLOSED_SET)))


def head_extra(config: Config) -> int:
    """The head columns the configured adapter adds beyond the classes (OSBP's unknown: 1)."""
    return max(getattr(e, "head_extra", 0) for e in _entries(config))


def check_label_sets(config: Config, domains: Domains, stages: list[Any]) -> None:
    """The adapter, the stages and ``model.unknown_threshold`` against the setting."""
    settings = adapter_settings(config)
    setting = domains.setting
    threshold = config.model.unknown_threshold
    open_ = setting in OPEN_SETTINGS
    name = config.adapter.name
    if threshold is not None and not 0 < threshold <= 1:
        raise DAError(f"config key model.unknown_threshold must be a probability in (0, 1], got {threshold}")
    if threshold is not None and not open_:
        raise DAError(f"config key model.unknown_threshold applies to the open_set and universal settings, and this "
                      f"config is {setting} (every target class is a source class); remove it")
    stage_open = [s.name for s in stages if getattr(s, "predicts_unknown", False)]
    adapter_open = any(s in OPEN_SETTINGS for s in settings)
    if adapter_open and setting not in settings:
        if not open_:
            raise DAError(f"adapter {name} is an open-set method (settings: {', '.join(settings)}) and this config "
                          f"is {setting}: no target image is unknown; use a closed-set adapter, or give the target "
                          f"classes the source lacks")
        raise DAError(f"adapter {name} is meant for the {' and '.join(settings)} settings, and this config is "
                      f"{setting}; use an adapter for {setting} (ovanet for universal)")
    if open_ and not (adapter_open or stage_open or threshold is not None):
        private = ", ".join(domains.label_sets.target_private[:6])
        raise DAError(f"adapter {name} is a closed-set method and cannot predict 'unknown', but this config is "
                      f"{setting} (target classes {private} are not in the source); use an open-set adapter (osbp, "
                      f"ovanet) or stage (shot), or set model.unknown_threshold (e.g. 0.5) to call a prediction "
                      f"whose confidence is below it unknown")


def open_model(model: Model, config: Config, domains: Domains) -> Model:
    """In the open settings: the model's ``unknown`` label, and the confidence rule of
    ``model.unknown_threshold``."""
    sets = domains.label_sets
    if sets is None or not sets.open:
        return model
    model.unknown_label = sets.unknown
    if config.model.unknown_threshold is not None:
        rule = ConfidenceRule(config.model.unknown_threshold, known=sets.unknown)
        model.confidence = rule.to(next(model.head.parameters()).device)
    return model

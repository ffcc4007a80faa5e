"""Published figures ("anchors") of the methods our adapters implement, read from anchors.yaml:
what results.md sets beside our figures, each with its protocol and how it picked its checkpoint."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

#: Our adapter names -> the method names used in the anchors file.
ADAPTER_METHODS = {"source_only": "source only", "dann": "DANN", "mmd": "DAN", "coral": "DeepCORAL",
                   "cdan": "CDAN", "mcc": "MCC", "afn": "AFN", "target_only": "target only"}
#: Row directions -> the anchors file's keys.
DIRECTION_KEYS = {"mnist->usps": "m_to_u", "usps->mnist": "u_to_m"}



@dataclass(frozen=True)
class Anchor:
    """One published figure pair for a method under one protocol."""

    protocol: str              # "A", "B", "C"
    protocol_description: str  # the protocol's one-line description
    method: str
    m_to_u: float
    u_to_m: float
    source: str
    selection: str = ""        # how the publication picked its checkpoint

    def accuracy(self, direction: str) -> float | None:
        """The published target accuracy (%) for a row direction, None for a direction it lacks."""
        key = DIRECTION_KEYS.get(direction)
        return None if key is None else getattr(self, key)


def load_anchors(path: Path | str) -> list[Anchor]:
    """Read the anchors YAML (protocols, each with figures) into a flat list of :class:`Anchor`."""
    data = yaml.safe_load(Path(path).read_text())
    anchors = []
    try:
        for protocol in data["protocols"]:
            for fig in protocol["figures"]:
                anchors.append(Anchor(protocol=str(protocol["id"]), protocol_description=protocol["description"],
                                      method=fig["method"], m_to_u=float(fig["m_to_u"]),
                                      u_to_m=float(fig["u_to_m"]), source=fig["source"],
                                      selection=protocol.get("selection") or ""))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: malformed anchors file ({type(exc).__name__}: {exc}); expected "
                         "protocols: [{id, description, figures: [{method, m_to_u, u_to_m, source}]}]") from exc
    return anchors


def adapter_method(adapter: str) -> str | None:
    """The published method an adapter implements; None for unknown or composite ("cdan+mcc") ones."""
    return ADAPTER_METHODS.get(adapter)

"""Published figures ("anchors") of the methods our adapters implement, read from anchors.yaml:
what results.md sets beside our figures, each with its protocol and how it picked its checkpoint."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

#: Our adapter names -> the method names used in the anchors file.
ADAPTER_METHODS = {"source_only": "source only", "dann": "DANN", "mmd": "DAN", "coral": "DeepCORAL",
                   "cdan": "CDAN", "mcc": "MCC", "afn": "AFN", "jan": "JAN", "target_only": "target only",
                   "shot": "SHOT", "mdd": "MDD", "bsp": "BSP"}
#: Row directions -> the anchors file's keys.
DIRECTION_KEYS = {"mnist->usps": "m_to_u", "usps->mnist": "u_to_m"}



@dataclass(frozen=True)
class Anchor:
    """A method's published figures under one protocol: the digit pair (``m_to_u``, ``u_to_m``)
    and/or other tasks by direction (``tasks``: ``{amazon->webcam: 91.4}``, Office-31 and Office-Home)."""

    protocol: str              # "A", "B", "C", "O31", "OH"
    protocol_description: str  # the protocol's one-line description
    method: str
    m_to_u: float | None
    u_to_m: float | None
    source: str
    selection: str = ""        # how the publication picked its checkpoint
    tasks: tuple[tuple[str, float], ...] = ()

    def accuracy(self, direction: str) -> float | None:
        """The published target accuracy (%) for a row direction, None for a direction it lacks."""
        key = DIRECTION_KEYS.get(direction)
        return getattr(self, key) if key is not None else dict(self.tasks).get(direction)


def load_anchors(path: Path | str) -> list[Anchor]:
    """Read the anchors YAML (protocols, each with figures) into a flat list of :class:`Anchor`."""
    data = yaml.safe_load(Path(path).read_text())
    anchors = []
    try:
        for protocol in data["protocols"]:
            for fig in protocol["figures"]:
                pair = {k: float(fig[k]) if k in fig else None for k in ("m_to_u", "u_to_m")}
                tasks = tuple((str(k), float(v)) for k, v in (fig.get("tasks") or {}).items())
                if pair["m_to_u"] is None and pair["u_to_m"] is None and not tasks:
                    raise KeyError("m_to_u, u_to_m or tasks")
                anchors.append(Anchor(protocol=str(protocol["id"]), protocol_description=protocol["description"],
                                      method=fig["method"], **pair, source=fig["source"],
                                      selection=protocol.get("selection") or "", tasks=tasks))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: malformed anchors file ({type(exc).__name__}: {exc}); expected "
                         "protocols: [{id, description, figures: [{method, m_to_u, u_to_m and/or tasks, source}]}]") from exc
    return anchors


def adapter_method(adapter: str) -> str | None:
    """The published method an adapter implements; None for unknown or composite ("cdan+mcc") ones."""
    return ADAPTER_METHODS.get(adapter)

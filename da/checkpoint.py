"""``checkpoint.pt``: the state of a run's stateful parts, collected by name and written atomically.

As Lightning Fabric's ``save(path, state)`` / ``load(path, state)``: a checkpoint holds, under each
part's name, that part's ``state_dict()`` (a part may be a mapping of parts: a stage's optimizers by
name), and resuming hands each entry back to the part's ``load_state_dict()``. The parts of a
dataclass are its fields declared with ``saved()``, so a new stateful part is one more such field, with
no edit of what saves or resumes. The file holds plain tensors and containers only.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, fields
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import torch

from da.errors import DAError
from da.run_files import replace_atomically

FORMAT = "da-checkpoint-2"
#: Checkpoints of before the stateful parts, with the model's weights at the top level: their weights
#: still load (``pretrain.checkpoint``, ``da eval``), gathered under ``model``; they do not resume.
LEGACY_FORMAT = "da-checkpoint-1"
#: The field metadata key ``saved()`` sets: the part's name in the checkpoint (None: the field's name).
SAVED = "checkpoint_part"


@runtime_checkable
class Stateful(Protocol):
    """A part of a run that a checkpoint saves and a resumed run loads back."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


def saved(default_factory: Callable[[], Any] | None = None, key: str | None = None) -> Any:
    """A dataclass field that is a stateful part of every checkpoint, under ``key`` (default: its name)."""
    if default_factory is None:
        return field(metadata={SAVED: key})
    return field(default_factory=default_factory, metadata={SAVED: key})


def saved_parts(obj: Any) -> dict[str, Stateful | Mapping[str, Stateful]]:
    """The ``saved()`` fields of dataclass ``obj`` by checkpoint name, in the order they are declared."""
    return {f.metadata[SAVED] or f.name: getattr(obj, f.name) for f in fields(obj) if SAVED in f.metadata}


def collect(parts: Mapping[str, Stateful | Mapping[str, Stateful]]) -> dict[str, Any]:
    """Each part's ``state_dict()`` by name (a mapping of parts gives a mapping of their states)."""
    return {name: part.state_dict() if isinstance(part, Stateful) else {k: p.state_dict() for k, p in part.items()}
            for name, part in parts.items()}


def restore(parts: Mapping[str, Stateful | Mapping[str, Stateful]], state: Mapping[str, Any]) -> None:
    """Load every part from its entry of ``state`` (as ``collect`` made it), in the order of ``parts``."""
    def entry(where: Mapping[str, Any], key: str, label: str) -> Any:
        if key not in where:
            raise DAError(f"the checkpoint holds no state for {label}: another version of da or another config wrote "
                          f"it; start a new run")
        return where[key]

    for name, part in parts.items():
        own = entry(state, name, name)
        if isinstance(part, Stateful):
            part.load_state_dict(own)
        else:
            for key, p in part.items():
                p.load_state_dict(entry(own, key, f"{name} {key!r}"))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file and rename it, so a kill never leaves a truncated checkpoint."""
    try:
        replace_atomically(path, lambda tmp: torch.save({"format": FORMAT, **state}, tmp))
    except OSError as exc:
        raise DAError(f"cannot write checkpoint {path} ({exc.strerror or exc}); the previous checkpoint is kept") from None


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by ``save_checkpoint`` (never unpickles arbitrary objects)."""
    path = Path(path)
    if not path.is_file():
        raise DAError(f"checkpoint {path} does not exist; give the checkpoint.pt of a finished or running run")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise DAError(f"checkpoint {path} cannot be read ({type(exc).__name__}); it is truncated or not a da checkpoint") from None
    if not isinstance(state, dict) or state.get("format") not in (FORMAT, LEGACY_FORMAT):
        raise DAError(f"checkpoint {path} is not a da checkpoint (format {FORMAT} expected)")
    if state["format"] == LEGACY_FORMAT:
        state["model"] = {"extractor": state["extractor"], "head": state["head"], "adapter": state["adapter"]}
    return state

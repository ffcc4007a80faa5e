"""Saving and loading ``checkpoint.pt``: plain tensors and containers only, written atomically."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from da.errors import DAError
from da.run_files import replace_atomically

FORMAT = "da-checkpoint-1"


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
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DAError(f"checkpoint {path} is not a da checkpoint (format {FORMAT} expected)")
    return state

"""Small files of a run folder, written atomically: a kill never leaves a truncated one."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then rename it over ``path``.

    A kill or a failed write leaves ``path`` as it was and no temporary file behind.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: Path, text: str) -> None:
    replace_atomically(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def truncate_metrics(path: Path, stage: str, step: int, order: dict[str, int]) -> None:
    """Drop metrics.jsonl rows written after (stage, step): a resumed run writes them again.
    ``order`` gives each stage name's place in the run."""
    if not path.exists():
        return
    limit = (order[stage], step)
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and _position(json.loads(line), order) <= limit]
    write_text_atomic(path, "".join(line + "\n" for line in keep))


def _position(row: dict[str, Any], order: dict[str, int]) -> tuple[int, int]:
    return order.get(row["stage"], -1), row["step"]

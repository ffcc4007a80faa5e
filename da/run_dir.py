"""Creating run folders: never overwriting one, and unique under concurrent starts."""
from __future__ import annotations

from pathlib import Path

from da.errors import DAError


def create_run_dir(out: str | None, out_root: str, name: str) -> Path:
    """``out`` exactly (an error if it exists), else ``out_root/name``, ``name-2``, ... (first free).

    ``mkdir`` without ``exist_ok`` is atomic, so two runs started at once get two folders.
    """
    if out is not None:
        path = Path(out)
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            raise DAError(f"output folder {path} already exists; choose another --out (runs are never overwritten)") from None
        except OSError as exc:
            raise DAError(f"cannot create output folder {path}: {exc.strerror}") from None
        return path
    root = Path(out_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DAError(f"cannot create runs folder {root}: {exc.strerror}; set out_root or --out") from None
    for i in range(1, 10_000):
        path = root / (name if i == 1 else f"{name}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise DAError(f"cannot create run folder {path}: {exc.strerror}") from None
    raise DAError(f"{root} holds too many runs named {name!r}; pass --out or set name")

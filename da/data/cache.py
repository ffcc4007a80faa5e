"""Generated domains cached under the data root: built once from a seed, then loaded.

A cache file (``<root>/generated/<name>.pt``) holds the generated tensors (images as uint8), the
recipe they were made from (generator name, version, seed, sizes) and a SHA-1 of their bytes. It
is written to a temporary file beside it and renamed into place, so a run killed while writing
leaves no half-written file under the final name, and two runs that build the same domain at once
each rename a whole file. A file that does not load, was made from another recipe, or whose bytes
do not match its digest is rebuilt, not read. A root that cannot be written to is not fatal: the
domain is generated in memory for this run, with a warning that the next run will build it again.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

FOLDER = "generated"


def cache_path(root: Path, name: str) -> Path:
    return Path(root) / FOLDER / f"{name}.pt"


def digest(tensors: dict[str, Tensor]) -> str:
    """SHA-1 over the tensors' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha1()
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.uint8 else t.numpy().tobytes())
    return h.hexdigest()


def read(path: Path, recipe: dict[str, Any]) -> dict[str, Tensor] | None:
    """The tensors of the cache at ``path`` if it is whole and was made from ``recipe``; else None."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        return None
    except Exception:  # truncated or corrupt: torch raises RuntimeError, pickle / zip errors
        return None
    if not isinstance(saved, dict) or saved.get("recipe") != recipe or not isinstance(saved.get("tensors"), dict):
        return None
    tensors = saved["tensors"]
    if not all(isinstance(t, Tensor) for t in tensors.values()) or digest(tensors) != saved.get("sha1"):
        return None
    return tensors


def write(path: Path, recipe: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    """Save to a temporary file named for this process beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save({"recipe": recipe, "sha1": digest(tensors), "tensors": tensors}, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def cached(root: Path, name: str, recipe: dict[str, Any], build: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
    """The tensors cached as ``name`` under ``root`` for ``recipe``; built with ``build()`` and saved
    when the cache is missing, from another recipe, or damaged."""
    path = cache_path(root, name)
    tensors = read(path, recipe)
    if tensors is not None:
        return tensors
    tensors = build()
    try:
        write(path, recipe, tensors)
    except OSError as exc:
        warnings.warn(f"could not cache the generated {name} domain at {path} ({exc.strerror or exc}); "
                      f"it was generated for this run only; set DA_DATA_ROOT or data.root to a writable folder",
                      stacklevel=2)
    return tensors

"""Generated and decoded domains cached on disk: built once, then loaded.

A cache file holds the tensors (images as uint8), the recipe they were made from (generator name,
version, seed, sizes) and a SHA-1 of their bytes. It lives in ``<root>/generated/<name>.pt``, or
in the user cache folder (``$DA_CACHE_DIR``, else ``$XDG_CACHE_HOME/da``, else ``~/.cache/da``)
when the data root cannot be written to or ``$DA_CACHE_DIR`` is set; caches decoded from files
the user keeps, such as USPS, always go to the user cache folder. It is written to a temporary
file beside it and renamed into place, so a run killed while writing leaves no half-written file
under the final name, and two runs that build the same domain at once each rename a whole file.
A file that does not load, was made from another recipe, or whose bytes do not match its digest
is rebuilt, not read. A read-only data root (a shared copy of the data sets) is not fatal: the
cache goes to the user cache folder; only when neither can be written is the domain built in
memory for this run alone, with a warning.
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


def user_cache_dir() -> Path:
    """Where caches go when the data root is read-only: ``$DA_CACHE_DIR``, ``$XDG_CACHE_HOME/da``, ``~/.cache/da``."""
    if os.environ.get("DA_CACHE_DIR"):
        return Path(os.environ["DA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "da"


def cache_paths(root: Path, name: str, in_root: bool = True) -> list[Path]:
    """The places a cache named ``name`` may be, in the order they are read and written:
    ``<root>/generated`` (unless ``in_root`` is false or ``$DA_CACHE_DIR`` is set), then the user
    cache folder, where the name carries a digest of the root (one cache per data root)."""
    tag = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:10]
    user = user_cache_dir() / f"{name}-{tag}.pt"
    if not in_root or os.environ.get("DA_CACHE_DIR"):
        return [user]
    return [cache_path(root, name), user]


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


def cached(root: Path, name: str, recipe: dict[str, Any], build: Callable[[], dict[str, Tensor]],
           in_root: bool = True) -> dict[str, Tensor]:
    """The tensors cached as ``name`` for ``recipe`` (where: ``cache_paths``); built with ``build()``
    and saved when the cache is missing, from another recipe, or damaged."""
    paths = cache_paths(root, name, in_root)
    for path in paths:
        tensors = read(path, recipe)
        if tensors is not None:
            return tensors
    tensors = build()
    errors = []
    for path in paths:
        try:
            write(path, recipe, tensors)
            return tensors
        except OSError as exc:
            errors.append(f"{path.parent}: {exc.strerror or exc}")
    warnings.warn(f"could not cache {name} ({'; '.join(errors)}); it was built for this run only; "
                  f"set DA_CACHE_DIR to a writable folder", stacklevel=2)
    return tensors

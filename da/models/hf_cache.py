"""Weights a user already has in the Hugging Face cache, found without network.

timm (Wightman 2019) publishes its weights on the Hugging Face Hub as ``timm/<model>.<tag>``;
``huggingface_hub`` keeps downloads under ``$HF_HUB_CACHE`` (else ``$HF_HOME/hub``, else
``~/.cache/huggingface/hub``) as ``models--timm--<model>.<tag>/snapshots/<commit>/model.safetensors``.
``model.pretrained: true`` looks there first (``huggingface_hub.try_to_load_from_cache``: no network);
when the file is absent it downloads only if ``HF_HUB_OFFLINE`` is unset, and otherwise stops with
one line naming the repository, the files and the folder it looked in, and the tags of the same
model that the cache does hold.
"""
from __future__ import annotations

import os
from pathlib import Path

from da.errors import DAError

#: Files a timm repository on the Hub holds its weights in, in the order timm prefers them.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at each call (as huggingface_hub resolves it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cached_file(repo_id: str, files: tuple[str, ...] = WEIGHT_FILES) -> Path | None:
    """The first of ``files`` the cache holds for ``repo_id`` (its ``main`` revision), or None."""
    from huggingface_hub import try_to_load_from_cache  # a dependency of timm, needed only for cached weights

    for name in files:
        found = try_to_load_from_cache(repo_id, name, cache_dir=str(hub_cache_dir()))
        if isinstance(found, str):
            return Path(found)
    return None


def cached_tags(repo_id: str) -> list[str]:
    """The repositories of the same model (any tag) that the cache has a folder for, e.g. for
    ``timm/convnext_tiny.fb_in1k``: ``timm/convnext_tiny.in12k_ft_in1k``."""
    owner, _, name = repo_id.partition("/")
    arch = name.split(".")[0]
    root = hub_cache_dir()
    if not root.is_dir():
        return []
    prefix = f"models--{owner}--"
    return sorted(f"{owner}/{p.name[len(prefix):]}" for p in root.glob(f"{prefix}{arch}*")
                  if p.name[len(prefix):].split(".")[0] == arch)


def hub_weights(repo_id: str, backbone: str) -> Path:
    """The weights file of ``repo_id``: from the cache, else downloaded (unless offline); else one line."""
    found = cached_file(repo_id)
    if found is not None:
        return found
    if not offline():
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(repo_id, WEIGHT_FILES[0]))
        except Exception:  # no network, no such file: the line below says what to do
            pass
    others = [t for t in cached_tags(repo_id) if t != repo_id]
    held = f"; the cache holds {', '.join(others)}: name one of those in model.backbone" if others else ""
    folder = f"models--{repo_id.replace('/', '--')}"
    raise DAError(f"model.pretrained: no weights of {backbone} found offline: looked for {' or '.join(WEIGHT_FILES)} "
                  f"of {repo_id} in {hub_cache_dir() / folder}{held}; download them there (hf download {repo_id}) "
                  f"or set model.weights: PATH")

"""The device a run uses, its seeds, and the random-number state a checkpoint saves and restores."""
from __future__ import annotations

import os
import random
import sys
from typing import Any

import numpy as np
import torch

from da.errors import DAError
from da.train.distributed import Dist


def pick_device(name: str, here: Dist | None = None) -> torch.device:
    """The device config key ``device`` names (auto: CUDA when torch sees a GPU, else the CPU); under
    torchrun (``here``: this process's place among several) a CUDA process takes its own GPU."""
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif name.startswith("cuda") and not torch.cuda.is_available():
        raise DAError(f"device {name!r} asked for, but torch sees no CUDA GPU; set device: auto or cpu")
    else:
        device = torch.device(name)
    if here is not None and here.on and device.type == "cuda":
        return torch.device("cuda", here.local_rank)
    return device


def seed_everything(seed: int, deterministic: bool, compiling: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:  # GPU kernels: cuBLAS needs a fixed workspace to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    if compiling or "torch._inductor" in sys.modules:  # compiled code: inductor keeps its own flag
        torch.use_deterministic_algorithms(deterministic)
    else:  # the same switch without importing inductor, which costs seconds at the start of every run
        torch._C._set_deterministic_algorithms(deterministic)


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": random.getstate(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(_tuples(state["python"]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class GlobalRNG:
    """The process's random number generators (torch, numpy, Python's, CUDA's) as a stateful part of a checkpoint."""

    def state_dict(self) -> dict[str, Any]:
        return rng_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(state)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value

"""What both ``da tune`` launchers share about a trial: the study's name, its folder and config, the
mark on the folder of a pruned trial, and its values on one line."""
from __future__ import annotations

from typing import Any

from da.bench.search_space_of import apply
from da.config import Config

STUDY = "da-tune"
PRUNED = "pruned"  # marks a trial folder whose trial the pruner stopped


def trial_folder(number: int) -> str:
    """Trial ``number``'s run folder, relative to the search folder (``trials/NNNN``)."""
    return f"trials/{number:04d}"


def trial_config(base: dict[str, Any], values: dict[str, Any], number: int) -> Config:
    """The config of trial ``number``: the searched config with the trial's drawn values."""
    config = apply(base, values)
    config.name = f"trial{number:04d}"
    return config


def show_values(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())

"""A run composed from its config: the layer above the stages (``da.stages``) and the training engine
(``da.train``), below the apps (``da.cli``, ``da.bench``, ``da.evaluate``).

``load_config`` / ``build_config`` (``da.composition.config``) give a config checked against the
registries (``da.config`` parses it without them); ``preflight`` checks its batch sizes against the
data; ``build_model`` / ``build_adapter`` (``da.composition.model``) build what it describes; and
``train`` (``da.composition.driver``) runs its stages into a run folder.
"""
from da.composition.config import build_config, check_config, load_config
from da.composition.driver import train
from da.composition.model import build_adapter, build_model
from da.composition.preflight import preflight

__all__ = ["build_adapter", "build_config", "build_model", "check_config", "load_config", "preflight", "train"]

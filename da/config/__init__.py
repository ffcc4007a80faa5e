"""YAML configs -> typed ``Config``; ``inherit:`` for shared bases; ``--set`` overrides.

The package splits by responsibility: ``schema`` (the dataclasses), ``files`` (reading, merging,
overriding and writing YAML), ``types`` (building dataclasses and checking values against type hints
and constructor arguments), ``sections`` (the ``adapter`` and ``stages`` sections by their shape),
``ranges`` (single values in their ranges) and ``build`` (``parse_config``, which runs them in order).
It reads no registry: ``da.composition`` checks names and adapter and stage settings against the
registries (``da.composition.load_config`` / ``build_config``). Every error is a ``DAError`` with one
line that names the offending key and how to fix it. Import from ``da.config``; the submodules are an
implementation detail.
"""
from da.config.build import parse_config
from da.config.files import apply_overrides, deep_merge, dump_yaml, flat_keys, read_config, read_yaml, set_value, to_dict
from da.config.schema import (
    LOOP_PROVIDED,
    AdapterConfig,
    AugmentConfig,
    Config,
    DataConfig,
    EarlyStoppingConfig,
    ModelConfig,
    PretrainConfig,
    StageConfig,
    TrainConfig,
    UnfreezeConfig,
)
from da.config.types import check_kwargs, settable_params

__all__ = [
    "LOOP_PROVIDED", "AdapterConfig", "AugmentConfig", "Config", "DataConfig", "EarlyStoppingConfig",
    "ModelConfig", "PretrainConfig", "StageConfig", "TrainConfig", "UnfreezeConfig",
    "apply_overrides", "check_kwargs", "deep_merge", "dump_yaml", "flat_keys", "parse_config", "read_config",
    "read_yaml", "set_value", "settable_params", "to_dict",
]

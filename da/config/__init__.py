"""YAML configs -> typed, validated ``Config``; ``inherit:`` for shared bases; ``--set`` overrides.

The package splits by responsibility: ``schema`` (the dataclasses), ``files`` (reading, merging,
overriding and writing YAML), ``checking`` (building dataclasses and checking types and adapter
kwargs), ``checks`` (ranges and names read from the registries) and ``build`` (``build_config``,
which runs them in order). Every error is a ``DAError`` with one line that names the offending key
and how to fix it. Import from ``da.config``; the submodules are an implementation detail.
"""
from da.config.build import build_config
from da.config.checking import check_kwargs, settable_params
from da.config.files import apply_overrides, deep_merge, dump_yaml, flat_keys, load_config, read_yaml, set_value, to_dict
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

__all__ = [
    "LOOP_PROVIDED", "AdapterConfig", "AugmentConfig", "Config", "DataConfig", "EarlyStoppingConfig",
    "ModelConfig", "PretrainConfig", "StageConfig", "TrainConfig", "UnfreezeConfig",
    "apply_overrides", "build_config", "check_kwargs", "deep_merge", "dump_yaml", "flat_keys", "load_config",
    "read_yaml", "set_value", "settable_params", "to_dict",
]

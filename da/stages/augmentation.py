"""``data.augment``: the batch transform a stage's sampler applies to a domain's training images."""
from __future__ import annotations

from da.data import DataSplit
from da.data.augment import RandomAffine
from da.errors import DAError
from da.train.run import Run


def augmentation(run: "Run", key: str, split: DataSplit) -> RandomAffine | None:
    """``data.augment``'s transform for the sampler of ``key`` (source, target or target_labelled), if it has one."""
    cfg, domain = run.config.data.augment, key.split("_")[0]
    if cfg is None or domain not in cfg.domains:
        return None
    if len(split.input_shape) != 3:
        name = getattr(run.config.data, domain)
        shape = "x".join(map(str, split.input_shape))
        raise DAError(f"data.augment transforms images (channels x height x width), but dataset {name} holds "
                      f"inputs of shape {shape}; remove data.augment or drop {domain} from data.augment.domains")
    return RandomAffine(cfg.rotate, cfg.scale, cfg.translate, run.generator)

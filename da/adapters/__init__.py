"""Built-in adapters; importing this package registers them in ``da.registry.ADAPTERS``."""
from da.adapters import bsp, cdan, coral, dann, jan, mdd, mmd, osbp, ovanet, pada, source_only, trained_by_stage  # noqa: F401 (registration)
from da.adapters.base import Adapter

__all__ = ["Adapter"]

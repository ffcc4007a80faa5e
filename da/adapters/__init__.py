"""Built-in adapters; importing this package registers them in ``da.registry.ADAPTERS``."""
from da.adapters import cdan, coral, dann, jan, mmd, osbp, ovanet, pada, source_only, trained_by_stage  # noqa: F401 (registration)
from da.adapters.base import Adapter

__all__ = ["Adapter"]

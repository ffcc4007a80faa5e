"""Built-in adapters; importing this package registers them in ``da.registry.ADAPTERS``."""
from da.adapters import adda, cdan, coral, dann, jan, mcd, mmd, source_only, subspace  # noqa: F401  (registration)
from da.adapters.base import Adapter

__all__ = ["Adapter"]

"""Backbones (registered in ``da.registry.BACKBONES``) and the task head."""
from da.models import backbones  # noqa: F401  (registration)
from da.models.head import linear_head

__all__ = ["linear_head"]

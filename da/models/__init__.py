"""Backbones (``BackboneEntry`` records in ``da.registry.BACKBONES``) and the task head."""
from da.models import backbones, clip_backbones, lenet_norm, shot_lenet, timm_backbones  # noqa: F401  (registration)
from da.models.backbone_entry import BackboneEntry, register_backbone
from da.models.head import linear_head

__all__ = ["BackboneEntry", "linear_head", "register_backbone"]

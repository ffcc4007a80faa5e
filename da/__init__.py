"""da: domain adaptation experiments with a registry of adapters and one training loop."""
import warnings

# pytorch-adapt pins torchmetrics 0.9.3, which imports the deprecated pkg_resources on import.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from da.adapters.base import Adapter
from da.data.dataset_entry import DatasetEntry, register_dataset
from da.errors import DAError
from da.models.backbone_entry import BackboneEntry, register_backbone
from da.registry import ADAPTERS, BACKBONES, DATASETS, Registry, register_adapter

__all__ = ["ADAPTERS", "BACKBONES", "DATASETS", "Adapter", "BackboneEntry", "DAError", "DatasetEntry", "Registry",
           "register_adapter", "register_backbone", "register_dataset"]
__version__ = "0.1.0"

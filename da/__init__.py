"""da: domain adaptation experiments with a registry of adapters and one training loop."""
import warnings

# pytorch-adapt pins torchmetrics 0.9.3, which imports the deprecated pkg_resources on import.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from da.adapters.base import Adapter
from da.errors import DAError
from da.registry import ADAPTERS, BACKBONES, DATASETS, Registry, register_adapter, register_backbone, register_dataset

__all__ = ["ADAPTERS", "BACKBONES", "DATASETS", "Adapter", "DAError", "Registry",
           "register_adapter", "register_backbone", "register_dataset"]
__version__ = "0.1.0"

"""Named image-folder data sets: ``data.source: amazon`` reads ``<data root>/office31/amazon``.

``register_image_folder(name, folder, **spec)`` registers a name in ``da.registry.DATASETS`` that
stands for an image-folder spec (``da.data.image_domain``), so benchmark directions such as
``amazon->webcam`` and plugins can name folder data sets as they name ``mnist``.

Office-31 (Saenko et al., ECCV 2010): amazon (2,817 images), dslr (498), webcam (795), 31 classes.
Office-Home (Venkateswara et al., CVPR 2017): Art (2,427), Clipart (4,365), Product (4,439),
Real_World (4,357), 65 classes. Neither has a test split: the protocol tests on the target's own
(unlabelled) training images, ``test_fraction: 0``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from da.errors import DAError
from da.registry import DATASETS, register_dataset

OFFICE31 = {"amazon": "office31/amazon", "dslr": "office31/dslr", "webcam": "office31/webcam"}
OFFICE_HOME = {"art": "office_home/Art", "clipart": "office_home/Clipart", "product": "office_home/Product",
               "real_world": "office_home/Real_World"}


def register_image_folder(name: str, folder: str, **spec: Any) -> None:
    """Register ``name`` as the image folder ``folder`` (relative to the data root, or absolute)."""
    full = {"folder": folder, **spec}

    def factory(root: Path, download: bool, role: str):
        raise DAError(f"dataset {name} is an image folder ({folder}); it is read through da.domains.load_domains")

    factory.__doc__ = f"Image folder <data root>/{folder}" if not Path(folder).is_absolute() else f"Image folder {folder}"
    factory.image_spec = full
    register_dataset(name)(factory)


def image_spec(name: Any) -> dict | None:
    """The image-folder spec of ``data.source`` / ``data.target``: the mapping itself, a registered
    folder name's spec, or None for an in-memory data set (mnist, usps, ...)."""
    if isinstance(name, dict):
        return name
    if isinstance(name, str) and name in DATASETS:
        return getattr(DATASETS.get(name), "image_spec", None)
    return None


for _name, _folder in {**OFFICE31, **OFFICE_HOME}.items():
    register_image_folder(_name, _folder)

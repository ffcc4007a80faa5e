"""Named image-folder data sets: ``data.source: amazon`` reads ``<data root>/office31/amazon``.

Each name is a ``DatasetEntry`` carrying an image-folder spec (``register_image_folder``), so
benchmark directions such as ``amazon->webcam`` and plugins name folder data sets as they name
``mnist``.

Office-31 (Saenko et al., ECCV 2010): amazon (2,817 images), dslr (498), webcam (795), 31 classes.
Office-Home (Venkateswara et al., CVPR 2017): Art (2,427), Clipart (4,365), Product (4,439),
Real_World (4,357), 65 classes. Neither has a test split: the protocol tests on the target's own
(unlabelled) training images, ``test_fraction: 0``.
"""
from __future__ import annotations

from da.data.dataset_entry import register_image_folder

OFFICE31 = {"amazon": "office31/amazon", "dslr": "office31/dslr", "webcam": "office31/webcam"}
OFFICE_HOME = {"art": "office_home/Art", "clipart": "office_home/Clipart", "product": "office_home/Product",
               "real_world": "office_home/Real_World"}

for _name, _folder in OFFICE31.items():
    register_image_folder(_name, _folder, num_classes=31)
for _name, _folder in OFFICE_HOME.items():
    register_image_folder(_name, _folder, num_classes=65)

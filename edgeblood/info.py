"""What edgeblood knows about BloodMNIST, independent of any optional package.

The values mirror ``medmnist.INFO['bloodmnist']`` (medmnist v3); they are kept here so that
edgeblood never needs medmnist (which drags in torchvision) at run time. ``tests/test_data.py``
checks them against medmnist's INFO whenever medmnist is importable.
"""

from __future__ import annotations

DATASET = "bloodmnist"

CLASS_NAMES: tuple[str, ...] = (
    "basophil",
    "eosinophil",
    "erythroblast",
    "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "platelet",
)

# Short names for tables, plots and exported artifacts (the long medmnist label of class 3 does not fit a column).
SHORT_CLASS_NAMES: tuple[str, ...] = (
    "basophil",
    "eosinophil",
    "erythroblast",
    "immature granulocyte",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "platelet",
)

SPLIT_SIZES = {"train": 11959, "val": 1712, "test": 3421}

_ZENODO = "https://zenodo.org/records/10519652/files"

# Official files and MD5 sums (MedMNIST v3 INFO).
FILES: dict[int, dict[str, str]] = {
    28: {"url": f"{_ZENODO}/bloodmnist.npz?download=1", "md5": "7053d0359d879ad8a5505303e11de1dc", "name": "bloodmnist.npz"},
    64: {"url": f"{_ZENODO}/bloodmnist_64.npz?download=1", "md5": "2b94928a2ae4916078ca51e05b6b800b", "name": "bloodmnist_64.npz"},
    128: {"url": f"{_ZENODO}/bloodmnist_128.npz?download=1", "md5": "adace1e0ed228fccda1f39692059dd4c", "name": "bloodmnist_128.npz"},
    224: {"url": f"{_ZENODO}/bloodmnist_224.npz?download=1", "md5": "b718ff6835fcbdb22ba9eacccd7b2601", "name": "bloodmnist_224.npz"},
}

# Files that are known-good although they are not the published ones (see ../shared/data/README.md):
# the 64 px set regenerated from the original PBC images with the official split and order.
KNOWN_REGENERATED_MD5 = {
    "117eb29ca8b133ea3ae277125bd2817a": "64 px (regenerated from the PBC images, official split)",
}

SUPPORTED_SIZES = tuple(sorted(FILES))

LICENSE = "CC BY 4.0"
CREDIT = (
    "BloodMNIST from MedMNIST v2 (Yang et al., Scientific Data 2023; CC BY 4.0), built from the PBC dataset "
    "of Acevedo et al. (Data in Brief 2020)."
)

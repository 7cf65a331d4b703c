"""BloodMNIST data: the only place in edgeblood that knows dataset file formats."""

from edgeblood.data.bloodmnist import BloodMNIST, find_dataset_file, load_bloodmnist
from edgeblood.data.download import download_bloodmnist, md5sum

__all__ = ["BloodMNIST", "download_bloodmnist", "find_dataset_file", "load_bloodmnist", "md5sum"]

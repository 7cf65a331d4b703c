"""The one way a dataset hands out a split, shared by BloodMNIST and image folders (so downstream code reads either)."""

from __future__ import annotations

import numpy as np

from edgeblood.errors import EdgebloodError

SPLITS = ("train", "val", "test")


class SplitArrays:
    """Mixin for a dataset that holds ``splits: {name: (uint8 NHWC images, int64 labels)}``."""

    splits: dict[str, tuple[np.ndarray, np.ndarray]]

    def images(self, split: str) -> np.ndarray:
        return self._split(split)[0]

    def labels(self, split: str) -> np.ndarray:
        return self._split(split)[1]

    def _split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in self.splits:
            raise EdgebloodError(f"unknown split '{split}'; choose one of {', '.join(SPLITS)}")
        return self.splits[split]

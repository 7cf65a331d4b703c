"""Calibration data for post-training quantization: a stratified subset of the TRAIN split.

Why train and not val/test: the test split must stay untouched for the accuracy we report, and val
is what ``--max-drop`` (accuracy-controlled quantization) validates on. Why stratified: BloodMNIST
is imbalanced (basophils are 7 % of the images), and activation ranges calibrated on a random draw
can miss the rare classes. Images are returned in the deployment contract's form (float32 NCHW RGB,
0-255) because every exported artifact takes raw pixels with normalisation inside the graph.
"""

from __future__ import annotations

import numpy as np

from edgeblood.errors import EdgebloodError
from edgeblood.runtimes import to_model_input as to_contract  # uint8 NHWC -> float32 NCHW 0-255

DEFAULT_CALIBRATION_IMAGES = 512


def stratified_indices(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` indices drawn without replacement, each class in proportion to its frequency (>= 1 each when n allows)."""
    labels = np.asarray(labels).reshape(-1)
    if n <= 0:
        raise EdgebloodError(f"--calibration-images must be at least 1 (got {n}); 512 is a good default")
    if len(labels) == 0:
        raise EdgebloodError("no calibration data: the train split is empty; point EDGEBLOOD_DATA/--data-dir at the BloodMNIST files")
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    share = counts / counts.sum() * n
    take = np.floor(share).astype(int)
    if n >= len(classes):
        take = np.maximum(take, 1)
    # hand out what rounding left over to the largest remainders, never beyond a class's size
    while take.sum() < n:
        room = take < counts
        remainder = np.where(room, share - take, -np.inf)
        take[int(np.argmax(remainder))] += 1
    while take.sum() > n:
        take[int(np.argmax(take))] -= 1
    picks = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in zip(classes, take) if k > 0]
    return np.sort(np.concatenate(picks))


def calibration_set(images: np.ndarray, labels: np.ndarray, n: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
    """float32 NCHW 0-255 images for calibration, stratified by ``labels`` (uint8 NHWC ``images`` in)."""
    if images is None or len(images) == 0:
        raise EdgebloodError("no calibration data: the train split has no images; point EDGEBLOOD_DATA/--data-dir at the BloodMNIST files")
    idx = stratified_indices(labels, n, seed)
    return to_contract(images[idx])


def batches(x: np.ndarray, batch_size: int):
    """Consecutive slices of ``x`` (the calibration readers' unit of work)."""
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size]

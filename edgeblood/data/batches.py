"""Batches straight from in-memory uint8 tensors: BloodMNIST fits in RAM at 28-128 px, and
skipping DataLoader workers keeps both cores on the model (measurably faster on 2-core machines).

``prefetch=True`` builds the next batch (index, convert, augment) in one background thread while the
caller trains on the current one: the model's kernels release the GIL, and the augmentation (mostly
the per-image Pillow JPEG round trip) then costs no step time when a core is free for it. The batches
and their random augmentation are the same with and without it (one generator, used in order).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from edgeblood.config.augment import AugmentConfig
from edgeblood.data.augment import augment_batch


def to_tensor_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC numpy -> uint8 NCHW tensor (a copy, contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, in the [0, 1] scale (computed on the train split)."""
    x = images.reshape(-1, 3).astype(np.float64) / 255.0
    return x.mean(0).round(6).tolist(), x.std(0).round(6).tolist()


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """scikit-learn's 'balanced' weights: n_samples / (n_classes * count_c)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    counts[counts == 0] = 1.0
    return torch.tensor(len(labels) / (num_classes * counts), dtype=torch.float32)


class Normalizer:
    """uint8 NCHW -> normalised float, on the target device (mean/std given in [0, 1] scale)."""

    def __init__(self, mean: list[float], std: list[float], device: torch.device | str = "cpu"):
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)

    def __call__(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 - self.mean) / self.std


def downscale(images: torch.Tensor, size: int) -> torch.Tensor:
    """[0, 1] NCHW images to ``size`` x ``size``, antialiased (plain bilinear would alias the cell's edges).

    Progressive resizing (edgeblood.training.progressive) trains its first epochs on these.
    """
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


class BatchStream:
    """Shuffled (or class-weighted) batches of one split, optionally augmented and sharded for DDP."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        augment: AugmentConfig | None = None,
        sample_weights: torch.Tensor | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        prefetch: bool = False,
    ):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.sample_weights, self.drop_last = sample_weights, drop_last
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.prefetch = prefetch
        self.epoch = 0
        self.image_size: int | None = None  # progressive resizing: downscale to this after augmenting

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_image_size(self, size: int | None) -> None:
        self.image_size = size

    def _order(self) -> torch.Tensor:
        n = len(self.labels)
        g = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
        if self.sample_weights is not None:
            order = torch.multinomial(self.sample_weights, n, replacement=True, generator=g)
        elif self.shuffle:
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.world_size > 1:  # equal shard per rank, as DistributedSampler does
            per_rank = -(-n // self.world_size)
            order = torch.cat([order, order[: per_rank * self.world_size - n]])[self.rank :: self.world_size]
        return order

    def __len__(self) -> int:
        n = -(-len(self.labels) // self.world_size)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y, _ in self.indexed():
            yield x, y

    def indexed(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Like iterating, plus the sample indices of each batch (to look up per-sample targets)."""
        batches = self._batches()
        return _prefetched(batches) if self.prefetch else batches

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = self._order()
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch * 31 + self.rank)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            x = self.images[idx].float().div_(255.0)
            if self.augment is not None:
                x = augment_batch(x, self.augment, g)
            if self.image_size is not None and self.image_size != x.shape[-1]:
                x = downscale(x, self.image_size)
            yield x, self.labels[idx], idx


def _prefetched(items: Iterator) -> Iterator:
    """Yield from ``items`` while one worker thread already builds the next item.

    Stopping early (break, an exception or Ctrl-C in the caller) waits for the one item in flight
    and closes ``items``; an exception raised while building an item is raised here, in order.
    """
    done = object()
    pool = ThreadPoolExecutor(1, thread_name_prefix="edgeblood-batches")
    pending = pool.submit(next, items, done)
    try:
        while (item := pending.result()) is not done:
            pending = pool.submit(next, items, done)
            yield item
    finally:
        pending.cancel()
        pool.shutdown(wait=True)
        items.close()

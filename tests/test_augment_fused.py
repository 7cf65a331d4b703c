"""The one-pass augmentation and the prefetching batch stream (issue #18): faster, and the same images.

The crop, rot90 and flip used to be three passes; they are now one ``grid_sample`` with the composed
affine map (or one exact gather without a crop). These tests hold it to the separate passes, to the
configured distribution of crop areas / rotations / flips, and the faster JPEG decode to the framing
module's round trip, pixel for pixel.
"""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
import torch

from edgeblood.config import AugmentConfig
from edgeblood.data.augment import augment_batch, jpeg_round_trip_rgb, random_resized_crop
from edgeblood.data.batches import BatchStream, to_tensor_nchw
from edgeblood.data.bloodmnist import load_sample
from edgeblood.framing import jpeg_round_trip

GEOMETRY = {
    "default recipe": AugmentConfig(crop_area=(0.9, 1.1), crop_shift=0.03),
    "published": AugmentConfig(crop_area=(0.9, 1.0)),
    "no crop": AugmentConfig(crop_area=(1.0, 1.0)),
    "rot90 only": AugmentConfig(crop_area=(1.0, 1.0), flips=False),
    "flips only": AugmentConfig(crop_area=(1.0, 1.0), rot90=False),
    "crop, no rot90": AugmentConfig(rot90=False),
}


def _separate_passes(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Crop, then rot90 per image, then flip: the three passes the augmentation was made of."""
    n = x.shape[0]
    if cfg.crop_area != (1.0, 1.0) or cfg.crop_shift > 0:
        x = random_resized_crop(x, cfg.crop_area, cfg.crop_ratio, g, shift=cfg.crop_shift)
    if cfg.rot90:
        turns = torch.randint(0, 4, (n,), generator=g)
        x = torch.stack([torch.rot90(img, int(k), dims=(-2, -1)) for img, k in zip(x, turns)])
    if cfg.flips:
        flips = torch.rand(n, generator=g) < 0.5
        x = torch.where(flips[:, None, None, None], x.flip(-1), x)
    return x


@pytest.mark.parametrize("name", list(GEOMETRY))
def test_one_pass_geometry_equals_crop_then_rot90_then_flip(name):
    cfg = GEOMETRY[name]
    x = to_tensor_nchw(load_sample(28).images("train")[:64]).float() / 255
    fused = augment_batch(x, cfg, torch.Generator().manual_seed(5))
    reference = _separate_passes(x, cfg, torch.Generator().manual_seed(5))
    assert torch.allclose(fused, reference, atol=1e-6), (fused - reference).abs().max()
    assert not torch.equal(fused, x)


def _coordinate_images(n: int, size: int) -> torch.Tensor:
    """Channel 0 holds each pixel's normalised x, channel 1 its y: a resampled copy shows the sampling map."""
    c = (torch.arange(size) * 2 + 1) / size - 1
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([x, y, torch.zeros_like(x)]).expand(n, 3, size, size).clone()


def test_one_pass_geometry_draws_the_configured_areas_rotations_and_flips():
    n, size = 4096, 28
    cfg = AugmentConfig(crop_area=(0.9, 1.1), crop_ratio=(0.9, 1.1), crop_shift=0.03)
    out = augment_batch(_coordinate_images(n, size), cfg, torch.Generator().manual_seed(0))
    # bilinear sampling of a linear ramp is exact away from the clamped border: fit the 2x2 map per image
    inner = slice(8, 20)
    c = (torch.arange(size)[inner] * 2 + 1) / size - 1
    py, px = torch.meshgrid(c, c, indexing="ij")
    design = torch.stack([px.flatten(), py.flatten(), torch.ones(px.numel())], 1)
    target = out[:, :2, inner, inner].flatten(2).transpose(1, 2)  # (n, pixels, 2)
    maps = torch.linalg.lstsq(design.expand(n, -1, -1), target).solution[:, :2, :].transpose(1, 2)  # (n, 2, 2)
    area = torch.linalg.det(maps)
    flipped = area < 0
    unflipped = torch.where(flipped[:, None, None], maps @ torch.tensor([[-1.0, 0.0], [0.0, 1.0]]), maps)
    # first row of scale @ R^k: (+, 0) k=0, (0, -) k=1, (-, 0) k=2, (0, +) k=3
    a, b = unflipped[:, 0, 0], unflipped[:, 0, 1]
    turns = torch.where(a.abs() > b.abs(), torch.where(a > 0, 0, 2), torch.where(b < 0, 1, 3))
    counts = torch.bincount(turns + 4 * flipped.long(), minlength=8)
    assert counts.min() > n / 8 - 100 and counts.max() < n / 8 + 100, counts  # ~5 sd of a fair 8-way draw
    area = area.abs()
    assert 0.9 - 1e-3 < area.min() and area.max() < 1.1 + 1e-3
    assert abs(area.mean() - 1.0) < 0.01 and abs((area < 1.0).float().mean() - 0.5) < 0.05


def test_fast_jpeg_round_trip_is_the_framing_round_trip_pixel_for_pixel():
    images = load_sample(28).images("train")[:40]
    for quality in (60, 75, 83, 95):
        for rgb in images:
            assert np.array_equal(jpeg_round_trip_rgb(rgb, quality), jpeg_round_trip(rgb, quality))


def _worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("edgeblood-batches")]


def test_prefetching_stream_yields_the_same_augmented_batches_and_stops_its_thread():
    data = load_sample(28)
    x, y = to_tensor_nchw(data.images("train")), torch.from_numpy(data.labels("train"))
    cfg = AugmentConfig(crop_area=(0.9, 1.1), crop_shift=0.03, stain=0.05, jpeg_prob=0.5)
    plain, ahead = (BatchStream(x, y, 32, augment=cfg, seed=3, prefetch=p) for p in (False, True))
    for epoch in (1, 2):
        plain.set_epoch(epoch)
        ahead.set_epoch(epoch)
        pairs = list(zip(plain.indexed(), ahead.indexed(), strict=True))
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2]) for a, b in pairs)
    assert not _worker_threads()
    batches = ahead.indexed()
    next(batches)
    assert _worker_threads()  # the next batch is being built
    del batches  # a caller that stops early (break, Ctrl-C)
    gc.collect()
    assert not _worker_threads()

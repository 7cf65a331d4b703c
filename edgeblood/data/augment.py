"""Augmentation on whole batches of tensors (no torchvision, no per-image Python loop).

Cells have no canonical orientation, so rot90 multiples and flips are label-preserving; the
published BloodMNIST studies add a random resized crop that keeps 90-100 % of the area.
Inputs are float tensors in [0, 1], NCHW; augmentation happens before normalisation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    rot90: bool = True
    flips: bool = True
    crop_area: tuple[float, float] = (0.9, 1.0)  # random resized crop; (1, 1) disables it
    crop_ratio: tuple[float, float] = (0.9, 1.1)  # aspect-ratio range of the crop
    color_jitter: float = 0.0  # strength of brightness/contrast/saturation jitter; 0 disables it

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the configured random augmentations to a [0, 1] NCHW batch."""
    n = x.shape[0]
    dev = x.device
    if cfg.crop_area != (1.0, 1.0):
        x = random_resized_crop(x, cfg.crop_area, cfg.crop_ratio, generator)
    if cfg.rot90:
        k = torch.randint(0, 4, (n,), generator=generator).to(dev)
        x = _rot90_per_sample(x, k)
    if cfg.flips:
        flip = torch.rand(n, generator=generator).to(dev) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if cfg.color_jitter > 0:
        x = color_jitter(x, cfg.color_jitter, generator)
    return x


def _rot90_per_sample(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    for turns in (1, 2, 3):
        idx = (k == turns).nonzero(as_tuple=True)[0]
        if idx.numel():
            out[idx] = torch.rot90(x[idx], turns, dims=(-2, -1))
    return out


def random_resized_crop(
    x: torch.Tensor, area: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Crop a random region of ``area`` fraction and aspect ``ratio`` and resize it back (bilinear)."""
    n = x.shape[0]
    a = torch.empty(n).uniform_(*area, generator=generator)
    log_r = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    r = torch.exp(log_r)
    sx = torch.sqrt(a * r).clamp(max=1.0)
    sy = torch.sqrt(a / r).clamp(max=1.0)
    tx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - sx)
    ty = (torch.rand(n, generator=generator) * 2 - 1) * (1 - sy)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, tx, sy, ty
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def color_jitter(x: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Brightness, contrast and saturation jitter by factors in [1 - strength, 1 + strength]."""
    n = x.shape[0]

    def factors() -> torch.Tensor:
        return (1 + (torch.rand(n, generator=generator) * 2 - 1) * strength).to(x.device, x.dtype)[:, None, None, None]

    x = x * factors()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factors() + mean
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - grey) * factors() + grey
    return x.clamp(0, 1)

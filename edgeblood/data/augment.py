"""Augmentation on whole batches of tensors (no torchvision, no per-image Python loop).

Cells have no canonical orientation, so rot90 multiples and flips are label-preserving; the
published BloodMNIST studies add a random resized crop that keeps 90-100 % of the area.
Inputs are float tensors in [0, 1], NCHW; augmentation happens before normalisation.

Three more cover the gap between a benchmark file and a live capture (edgeblood.framing): the
window's scale and position jitter (``crop_area`` above 1 zooms out, ``crop_shift`` moves the window),
a per-channel stain/white-balance gain (``stain``), and a JPEG round trip at a random quality on a
share of the images (``jpeg_prob``; the rest stay uncompressed), since the official 28 px file went
through JPEG q75 while an app's camera pixels may not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    rot90: bool = True
    flips: bool = True
    crop_area: tuple[float, float] = (0.9, 1.0)  # random resized crop; (1, 1) disables it
    crop_ratio: tuple[float, float] = (0.9, 1.1)  # aspect-ratio range of the crop
    color_jitter: float = 0.0  # strength of brightness/contrast/saturation jitter; 0 disables it
    crop_shift: float = 0.0  # extra random offset of the window, as a fraction of its side
    stain: float = 0.0  # per-channel gain in [1 - stain, 1 + stain] (stain and white-balance variation)
    jpeg_prob: float = 0.0  # share of images given a JPEG round trip
    jpeg_quality: tuple[int, int] = (60, 95)  # quality range of that round trip

    def validate(self) -> None:
        """One clear line per bad value, at parse time, instead of a torch error at the first batch."""
        from edgeblood.errors import EdgebloodError

        lo, hi = self.crop_area
        checks = [
            (0.25 <= lo <= hi <= 1.25,
             f"--crop-area must be LOW,HIGH with 0.25 <= LOW <= HIGH <= 1.25 (share of the window kept; above 1 zooms out), got {lo},{hi}"),
            (0 < self.crop_ratio[0] <= self.crop_ratio[1], f"crop aspect ratio must be 0 < LOW <= HIGH, got {self.crop_ratio}"),
            (0 <= self.color_jitter < 1, f"--color-jitter must be in [0, 1), got {self.color_jitter}"),
            (0 <= self.crop_shift <= 0.25, f"crop shift must be in [0, 0.25] of the window side, got {self.crop_shift}"),
            (0 <= self.stain < 0.5, f"stain jitter must be in [0, 0.5), got {self.stain}"),
            (0 <= self.jpeg_prob <= 1, f"JPEG augmentation probability must be in [0, 1], got {self.jpeg_prob}"),
            (1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100, f"JPEG quality range must be 1 <= LOW <= HIGH <= 100, got {self.jpeg_quality}"),
        ]
        for ok, message in checks:
            if not ok:
                raise EdgebloodError(message)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the configured random augmentations to a [0, 1] NCHW batch."""
    n = x.shape[0]
    dev = x.device
    if cfg.crop_area != (1.0, 1.0) or cfg.crop_shift > 0:
        x = random_resized_crop(x, cfg.crop_area, cfg.crop_ratio, generator, shift=cfg.crop_shift)
    if cfg.rot90:
        k = torch.randint(0, 4, (n,), generator=generator).to(dev)
        x = _rot90_per_sample(x, k)
    if cfg.flips:
        flip = torch.rand(n, generator=generator).to(dev) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if cfg.color_jitter > 0:
        x = color_jitter(x, cfg.color_jitter, generator)
    if cfg.stain > 0:
        gain = 1 + (torch.rand(n, 3, generator=generator) * 2 - 1) * cfg.stain
        x = (x * gain.to(dev, x.dtype)[:, :, None, None]).clamp(0, 1)
    if cfg.jpeg_prob > 0:
        x = random_jpeg(x, cfg.jpeg_prob, cfg.jpeg_quality, generator)
    return x


def random_jpeg(x: torch.Tensor, prob: float, quality: tuple[int, int], generator: torch.Generator | None = None) -> torch.Tensor:
    """JPEG round trip (Pillow, as the official 28 px file was made) for a random share of the batch.

    Per image through Pillow: ~40 us at 28 px, a few ms per batch against ~300 ms of training step.
    """
    from edgeblood.framing import jpeg_round_trip

    n = x.shape[0]
    chosen = (torch.rand(n, generator=generator) < prob).nonzero(as_tuple=True)[0]
    if not chosen.numel():
        return x
    qualities = torch.randint(quality[0], quality[1] + 1, (n,), generator=generator)
    pixels = (x[chosen].detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    done = [torch.from_numpy(np.array(jpeg_round_trip(img, int(qualities[i])))) for img, i in zip(pixels, chosen.tolist())]
    out = x.clone()
    out[chosen] = torch.stack(done).permute(0, 3, 1, 2).to(x.device, x.dtype).div_(255.0)
    return out


def _rot90_per_sample(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    for turns in (1, 2, 3):
        idx = (k == turns).nonzero(as_tuple=True)[0]
        if idx.numel():
            out[idx] = torch.rot90(x[idx], turns, dims=(-2, -1))
    return out


def random_resized_crop(
    x: torch.Tensor, area: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator | None = None,
    shift: float = 0.0,
) -> torch.Tensor:
    """Crop a random region of ``area`` fraction and aspect ``ratio`` and resize it back (bilinear).

    ``area`` above 1 zooms out (edge pixels repeat: the smear background), ``shift`` moves the
    window by up to that fraction of its side on top of the room the crop leaves.
    """
    n = x.shape[0]
    a = torch.empty(n).uniform_(*area, generator=generator)
    log_r = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    r = torch.exp(log_r)
    limit = max(1.0, math.sqrt(area[1] * ratio[1]))
    sx = torch.sqrt(a * r).clamp(max=limit)
    sy = torch.sqrt(a / r).clamp(max=limit)
    tx = (torch.rand(n, generator=generator) * 2 - 1) * ((1 - sx).clamp(min=0) + 2 * shift)
    ty = (torch.rand(n, generator=generator) * 2 - 1) * ((1 - sy).clamp(min=0) + 2 * shift)
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

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

import io
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
    """Apply the configured random augmentations to a [0, 1] NCHW batch.

    The crop, the rot90 turns and the flips are one resampling: their affine maps are composed per
    image and applied by a single ``grid_sample`` (without a crop, rot90 + flip are one exact pixel
    gather). The random numbers are drawn in the same order as when each was a separate pass, and
    rot90/flip move whole pixels, so the output equals crop-then-rotate-then-flip to float rounding.
    """
    n = x.shape[0]
    dev = x.device
    theta = None
    if cfg.crop_area != (1.0, 1.0) or cfg.crop_shift > 0:
        theta = random_crop_theta(n, cfg.crop_area, cfg.crop_ratio, generator, shift=cfg.crop_shift)
    turns = torch.randint(0, 4, (n,), generator=generator) if cfg.rot90 else None
    flips = torch.rand(n, generator=generator) < 0.5 if cfg.flips else None
    if theta is not None:
        x = _resample(x, _compose_dihedral(theta, turns, flips))
    elif turns is not None or flips is not None:
        x = _dihedral_gather(x, turns, flips)
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

    Per image through Pillow, whose Python code costs more than the codec at 28 px: this was ~7 % of
    a 1-thread se-cnn 28 px training step (issue #18 profile), the largest part of augmentation.
    """
    n = x.shape[0]
    chosen = (torch.rand(n, generator=generator) < prob).nonzero(as_tuple=True)[0]
    if not chosen.numel():
        return x
    qualities = torch.randint(quality[0], quality[1] + 1, (n,), generator=generator)
    pixels = (x[chosen].detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    done = np.stack([jpeg_round_trip_rgb(img, int(qualities[i])) for img, i in zip(pixels, chosen.tolist())])
    out = x.clone()
    out[chosen] = torch.from_numpy(done).permute(0, 3, 1, 2).to(x.device, x.dtype).div_(255.0)
    return out


def jpeg_round_trip_rgb(rgb: np.ndarray, quality: int) -> np.ndarray:
    """edgeblood.framing.jpeg_round_trip (same encoder call, same libjpeg decode, same pixels), decoded
    with Pillow's JPEG decoder straight from the bytes: ``Image.open`` parses the markers in Python,
    which took ~40 % of the round trip of a 28 px image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(buf, "JPEG", quality=int(quality))
    return np.asarray(Image.frombytes("RGB", (rgb.shape[1], rgb.shape[0]), buf.getvalue(), "jpeg", "RGB", ""))


# rot90 by one turn (torch.rot90, dims (-2, -1)) as a sampling map in grid_sample's normalised (x, y):
# output (x, y) reads input (-y, x). A horizontal flip (x.flip(-1)) reads (-x, y).
_ROT90 = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
_FLIP_X = torch.tensor([[-1.0, 0.0], [0.0, 1.0]])


def _compose_dihedral(theta: torch.Tensor, turns: torch.Tensor | None, flips: torch.Tensor | None) -> torch.Tensor:
    """theta (N, 2, 3) of a crop, followed by ``turns`` rot90s and then a flip: sampling maps compose as A @ R^k @ F."""
    linear = theta[:, :, :2]
    if turns is not None:
        rotations = torch.stack([torch.linalg.matrix_power(_ROT90, k) for k in range(4)])
        linear = linear @ rotations[turns]
    if flips is not None:
        linear = torch.where(flips[:, None, None], linear @ _FLIP_X, linear)
    return torch.cat([linear, theta[:, :, 2:]], dim=2)


def _dihedral_gather(x: torch.Tensor, turns: torch.Tensor | None, flips: torch.Tensor | None) -> torch.Tensor:
    """rot90 ``turns`` then a horizontal flip, per image, as one exact gather of pixel indices."""
    n, c, h, w = x.shape
    base = torch.arange(h * w).view(h, w)
    tables = torch.stack([torch.rot90(base, k, dims=(0, 1)).flip(-1) if flip else torch.rot90(base, k, dims=(0, 1))
                          for flip in (False, True) for k in range(4)]).view(8, -1)
    code = (turns if turns is not None else torch.zeros(n, dtype=torch.long)) + 4 * (flips.long() if flips is not None else 0)
    index = tables[code].to(x.device)[:, None, :].expand(n, c, h * w)
    return x.flatten(2).gather(2, index).view(n, c, h, w)


def random_resized_crop(
    x: torch.Tensor, area: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator | None = None,
    shift: float = 0.0,
) -> torch.Tensor:
    """Crop a random region of ``area`` fraction and aspect ``ratio`` and resize it back (bilinear).

    ``area`` above 1 zooms out (edge pixels repeat: the smear background), ``shift`` moves the
    window by up to that fraction of its side on top of the room the crop leaves.
    """
    return _resample(x, random_crop_theta(x.shape[0], area, ratio, generator, shift=shift))


def random_crop_theta(
    n: int, area: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator | None = None, shift: float = 0.0,
) -> torch.Tensor:
    """The (N, 2, 3) affine sampling maps of ``n`` random resized crops (see random_resized_crop)."""
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
    return theta


def _resample(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
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

"""What training augmentation does, as data: the ``AugmentConfig`` a recipe fills and run.json records.

The kernels that apply it to tensors live in ``edgeblood.data.augment`` (torch); this half is plain
data so that recipes, ``--help`` and a notebook building a config never load torch. The module
docstring of ``edgeblood.data.augment`` says what each augmentation models and why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgeblood.errors import ConfigError


@dataclass
class AugmentConfig:
    """The random augmentations of one training run (``edgeblood.data.augment.augment_batch`` applies them).

    Every field at its "off" value draws no random numbers, so adding a field never changes the runs
    that leave it off. Tuples are (low, high) ranges.
    """

    rot90: bool = True
    flips: bool = True
    crop_area: tuple[float, float] = (0.9, 1.0)  # random resized crop; (1, 1) disables it
    crop_ratio: tuple[float, float] = (0.9, 1.1)  # aspect-ratio range of the crop
    color_jitter: float = 0.0  # strength of brightness/contrast/saturation jitter; 0 disables it
    crop_shift: float = 0.0  # extra random offset of the window, as a fraction of its side
    stain: float = 0.0  # per-channel gain in [1 - stain, 1 + stain] (stain and white-balance variation)
    jpeg_prob: float = 0.0  # share of images given a JPEG round trip
    jpeg_quality: tuple[int, int] = (60, 95)  # quality range of that round trip
    # Another lab (issue #26). Stain amounts are optical densities (natural log) per stain: H, E, D.
    hed_scale: float = 0.0  # each stain's amount times U[1 - hed_scale, 1 + hed_scale], per image
    hed_shift: float = 0.0  # plus U[-hed_shift, hed_shift] optical density, per image and stain
    white_balance: float = 0.0  # per-channel gain exp(U[-w, w]): the illuminant / white balance (background colour)
    brightness: float = 0.0  # one gain exp(U[-b, b]) for all channels: exposure
    gamma: float = 0.0  # tone curve x ** exp(U[-g, g])
    zoom: tuple[float, float] = (1.0, 1.0)  # pixel scale: cells larger (> 1) or smaller (< 1), log-uniform; (1, 1) = off
    blur: float = 0.0  # Gaussian blur, sigma U[0, blur] as a share of the image side (0.03 = 0.84 px at 28 px); 0 = off
    lab_prob: float = 1.0  # share of images given the other-lab augmentations above (the rest keep PBC's look and scale)

    def validate(self) -> None:
        """One clear line per bad value, at parse time, instead of a torch error at the first batch.

        Raises:
            ConfigError: the first value out of its range, naming the command-line option.
        """
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
            (0 <= self.hed_scale < 1, f"--hed-scale must be in [0, 1) (each stain's amount times 1 +- this), got {self.hed_scale}"),
            (0 <= self.hed_shift <= 1, f"--hed-shift must be in [0, 1] (optical density added to each stain), got {self.hed_shift}"),
            (0 <= self.white_balance <= 1, f"--white-balance must be in [0, 1] (per-channel log gain), got {self.white_balance}"),
            (0 <= self.brightness <= 1, f"--brightness must be in [0, 1] (log gain), got {self.brightness}"),
            (0 <= self.gamma <= 1, f"--gamma must be in [0, 1] (log of the exponent), got {self.gamma}"),
            (0.5 <= self.zoom[0] <= self.zoom[1] <= 2,
             f"--zoom must be LOW,HIGH with 0.5 <= LOW <= HIGH <= 2 (scale of the cells; above 1 larger), got {','.join(f'{v:g}' for v in self.zoom)}"),
            (0 <= self.blur <= 0.1, f"--blur must be in [0, 0.1] (largest Gaussian sigma as a share of the image side), got {self.blur}"),
            (0 <= self.lab_prob <= 1, f"--lab-aug must be in [0, 1] (share of images given the other-lab augmentations), got {self.lab_prob}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def other_lab(self) -> bool:
        """Whether any of the other-lab augmentations (stain, illuminant, gamma, zoom, blur) is on."""
        return (self.hed_scale > 0 or self.hed_shift > 0 or self.white_balance > 0 or self.brightness > 0 or self.gamma > 0
                or tuple(self.zoom) != (1.0, 1.0) or self.blur > 0)

    def to_dict(self) -> dict:
        """The fields as a JSON-able dict (as run.json stores them)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        """The config from :meth:`to_dict`'s form; JSON lists become the tuples the ranges are."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

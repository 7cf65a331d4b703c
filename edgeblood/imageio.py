"""Reading a user's own cell images the way the model was trained to see them.

BloodMNIST images are square crops centred on one cell, resized with bilinear filtering. A photo
from a microscope app is usually not square, so it is centre-cropped to a square first (never
stretched, which would change cell shapes), then resized to the run's input size. Shared by
``edgeblood predict`` and ``edgeblood explain``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgeblood.errors import EdgebloodError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def load_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """One image file -> uint8 ``size`` x ``size`` x 3 RGB (centre square crop, bilinear resize)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise EdgebloodError(f"image {path} does not exist; pass existing image files or folders")
    try:
        with Image.open(path) as img:
            img.load()
            rgb = _to_rgb(img)
    except (UnidentifiedImageError, OSError) as exc:
        raise EdgebloodError(f"{path} is not a readable image ({exc}); pass PNG/JPEG/TIFF/BMP files") from None
    return np.asarray(center_crop_resize(rgb, size), dtype=np.uint8)


def load_images(paths: Iterable[str | os.PathLike], size: int) -> tuple[np.ndarray, list[Path]]:
    """Files and folders (searched recursively for images) -> uint8 NHWC batch and the file list."""
    files = find_images(paths)
    batch = np.stack([load_image(p, size) for p in files]) if files else np.zeros((0, size, size, 3), np.uint8)
    return batch, files


def find_images(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand folders to the image files inside them (sorted); keep files in the order given."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise EdgebloodError(f"folder {p} contains no images ({', '.join(IMAGE_SUFFIXES)}); pass a folder with cell images")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise EdgebloodError(f"{p} does not exist; pass image files or folders of images")
    if not files:
        raise EdgebloodError("no images given; pass one or more image files or folders")
    return files


def center_crop_resize(img, size: int):
    """Centre square crop then bilinear resize (a PIL image in, a PIL image out)."""
    from PIL import Image

    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return img


def _to_rgb(img):
    """Any PIL mode -> 8-bit RGB; 16-bit and float greyscale are scaled by their own range."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
        img = Image.fromarray(arr.round().astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "P", "PA"):
        # Composite transparency onto white (a slide background), not black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")

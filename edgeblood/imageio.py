"""Reading real cell images the way BloodMNIST was made, so an app's pixels match the training pixels.

One function turns any image file a lab is likely to have into the model's input::

    load_image(path, size, framing=...) -> uint8 array [size, size, 3], RGB

The documented recipe (what ``edgeblood predict``, ``edgeblood explain`` and the examples do):

1. **Decode.** PNG, JPEG, BMP, WebP through Pillow; TIFF through ``tifffile`` (first page; 8-, 16-bit
   and float, interleaved or planar) and Pillow when tifffile is absent. JPEG EXIF orientation is applied.
2. **Bit depth.** 16-bit values are scaled over the full range (``round(v / 257)``, 65535 -> 255); float
   images are read as 0-1 when their maximum is <= 1, else as 0-255, and clipped.
3. **Channels.** Greyscale is replicated to R=G=B. An alpha channel is *composited onto white*
   (transparent pixels become white, like the bright background of a smear), not dropped, so a cut-out
   cell on a transparent canvas looks like a cell on a slide. Anything other than 1-4 channels is refused.
4. **Frame** as the training images were cut from their captures (``edgeblood.framing``): by default
   BloodMNIST's centred 200 x 200 px window (offsets rounded with Python's round), PIL bilinear resize
   to ``size`` x ``size``, and for the official 28 px file a JPEG q75 round trip. This rebuilds the
   regenerated 64 px val images from the PBC originals exactly for 95 % of them (the rest differ by
   the JPEG decoder, mean |difference| < 0.4 grey levels). Single-cell crops that are already framed
   like training images use ``Framing(kind="square")`` (``--framing cell-crop``).

Every failure is an ``EdgebloodError`` naming the file, so a batch can report it and carry on.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from edgeblood.errors import DataError, EdgebloodError
from edgeblood.framing import Framing

#: File name endings walked in folders (files named explicitly are tried whatever their ending).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
TIFF_EXTENSIONS = (".tif", ".tiff")
#: Framing for images that are already single-cell crops framed like the training images.
CELL_CROP = Framing(kind="square", window_px=None, source="single-cell crops framed like training images")


def load_image(path: str | os.PathLike, size: int, *, framing: Framing) -> np.ndarray:
    """Decode ``path`` and return it as uint8 ``[size, size, 3]`` RGB, framed as the training images were.

    Raises ``EdgebloodError`` (one line, naming the file) for a missing, unreadable, wrongly-shaped
    image, or one smaller than the framing's window.
    """
    path = Path(path)
    rgb = to_rgb_uint8(read_pixels(path), path)
    try:
        return framing.apply(rgb, size)
    except EdgebloodError as exc:
        raise DataError(f"{path}: {exc}") from None


def read_pixels(path: str | os.PathLike) -> np.ndarray:
    """Decode a file into a numpy array (H x W, or H x W x C) in its stored dtype, alpha kept."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    if not path.is_file():
        raise DataError(f"{path}: not a file; pass image files or folders of them")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes), so there is no image in it; the copy or save that wrote it did not finish - copy it again")
    if path.suffix.lower() in TIFF_EXTENSIONS:
        arr = _read_tiff(path)
        if arr is not None:
            return arr
    return _read_with_pillow(path)


def _read_tiff(path: Path) -> np.ndarray | None:
    """First page of a TIFF via tifffile (16-bit RGB, planar, float); None when tifffile is absent."""
    try:
        import tifffile
    except ImportError:
        return None  # Pillow still reads most 8-bit and greyscale 16-bit TIFFs
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            arr = page.asarray()
            planar = getattr(page, "planarconfig", None) == tifffile.PLANARCONFIG.SEPARATE
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error, ...
        raise DataError(f"{path}: cannot decode this TIFF ({_why(exc)}); re-save it as an 8- or 16-bit RGB/greyscale TIFF or PNG") from None
    if planar and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)
    return arr


def _read_with_pillow(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow warns (to stderr) between its pixel limit and twice it, and refuses above that (below)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()  # force decoding now: a truncated file fails here, inside this try
                img = ImageOps.exif_transpose(img)
                return _pillow_to_array(img)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image Pillow can decode; use PNG, JPEG or TIFF") from None
    except Image.DecompressionBombError as exc:
        raise DataError(_too_many_pixels(path, exc)) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot decode image ({_why(exc)}); the file is damaged or truncated, re-export it") from None


def _too_many_pixels(path: Path, exc: Exception) -> str:
    """Pillow's decompression-bomb refusal, said as what it is: a pixel limit, and how to get under it."""
    from PIL import Image

    limit = 2 * Image.MAX_IMAGE_PIXELS  # Pillow refuses above twice MAX_IMAGE_PIXELS (and only warns below)
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f" ({int(found.group(1)) / 1e6:.0f} million pixels)" if found else ""
    return (f"{path}: image is too large to decode{size}: Pillow refuses images above {limit / 1e6:.0f} million pixels "
            f"(its guard against decompression bombs); crop the region with the cells into a smaller file, or downscale it "
            f"(e.g. `magick {path.name} -resize 25% smaller.png`) and choose --framing to match")


def _pillow_to_array(img) -> np.ndarray:
    """Pillow image -> array, keeping 16-bit depth and alpha for ``to_rgb_uint8`` to handle once."""
    mode = img.mode
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)
    if mode in ("I", "F"):  # 32-bit int (16-bit PNGs on some Pillow versions) or float
        arr = np.asarray(img)
        return arr.astype(np.uint16) if mode == "I" and arr.min() >= 0 and arr.max() <= 65535 and arr.max() > 255 else arr
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    elif mode not in ("L", "RGB", "RGBA"):  # 1, CMYK, YCbCr, LAB, HSV
        img = img.convert("RGB")
    return np.asarray(img)


def to_rgb_uint8(arr: np.ndarray, where: str | os.PathLike = "image") -> np.ndarray:
    """Any decoded array -> uint8 H x W x 3 RGB (bit depth scaled, grey replicated, alpha on white)."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] > 4 and arr.shape[0] <= 4:  # channels-first (planar) layout
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{where}: expected a 2-D image, got an array of shape {arr.shape}; pass single images, not stacks or volumes")
    channels = arr.shape[-1]
    if channels not in (1, 2, 3, 4):
        raise DataError(f"{where}: image has {channels} channels; edgeblood reads greyscale, RGB or RGBA images, save it as one of those")
    values = _to_unit_float(arr, where) if arr.dtype != np.uint8 else None
    if values is None and channels in (1, 3):  # the common case: no float round trip, exact pixels
        return np.ascontiguousarray(np.repeat(arr, 3, axis=-1) if channels == 1 else arr)
    if values is None:
        values = arr.astype(np.float32) / 255.0
    color = values[..., :-1] if channels in (2, 4) else values
    if channels in (2, 4):
        alpha = values[..., -1:]
        color = color * alpha + (1.0 - alpha)  # composite onto white
    if color.shape[-1] == 1:
        color = np.repeat(color, 3, axis=-1)
    return np.ascontiguousarray(np.clip(np.rint(color * 255.0), 0, 255).astype(np.uint8))


def _to_unit_float(arr: np.ndarray, where) -> np.ndarray:
    """Scale a non-uint8 array to 0-1 floats (documented in the module docstring)."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        peak = float(finite.max()) if finite.size else 0.0
        return np.clip(finite if peak <= 1.0 else finite / 255.0, 0.0, 1.0)
    if np.issubdtype(arr.dtype, np.integer):
        peak = int(arr.max()) if arr.size else 0
        if arr.min() < 0:
            raise DataError(f"{where}: signed pixel values are not supported; save the image as 8- or 16-bit unsigned")
        scale = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else float(np.iinfo(arr.dtype).max)
        return arr.astype(np.float64).astype(np.float32) / scale
    raise DataError(f"{where}: unsupported pixel type {arr.dtype}; save the image as 8- or 16-bit PNG or TIFF")


def iter_image_files(
    paths: Iterable[str | os.PathLike],
    *,
    problems: list[tuple[Path, str]] | None = None,
) -> Iterator[Path]:
    """Yield image files from files and folders (folders walked recursively, sorted, known endings).

    A file named explicitly is yielded whatever its ending (decoding will say if it is not an image).
    Hidden files (``.*``, e.g. macOS ``._x.png``) are skipped in folders; a file reached twice is
    yielded once. A missing path or a folder without images is an ``EdgebloodError``; when a
    ``problems`` list is given it is appended there as ``(path, message)`` instead, and the walk goes on.
    """
    seen: set[Path] = set()

    def report(path: Path, message: str) -> None:
        if problems is None:
            raise DataError(message)
        problems.append((path, message))

    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = False
            for file in _walk(path):
                found = True
                key = file.resolve()
                if key not in seen:
                    seen.add(key)
                    yield file
            if not found:
                report(path, f"{path}: folder has no image files ({', '.join(IMAGE_EXTENSIONS)}); point at the folder that holds the images")
        elif path.exists():
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                yield path
        else:
            report(path, f"{path}: no such file or folder; check the path")


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                yield Path(root) / name


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


def find_images(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """All image files under ``paths`` as a list; any missing path or empty folder is an error."""
    files = list(iter_image_files(paths))
    if not files:
        raise DataError("no images given; pass one or more image files or folders")
    return files


def load_images(paths: Iterable[str | os.PathLike], size: int, *, framing: Framing) -> tuple[np.ndarray, list[Path]]:
    """Files and folders -> uint8 NHWC batch and the file list (strict: the first bad file raises).

    Batch tools that must skip bad files (``edgeblood predict``) call ``load_image`` per file instead.
    """
    files = find_images(paths)
    batch = np.stack([load_image(p, size, framing=framing) for p in files])
    return batch, files

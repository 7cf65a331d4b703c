"""How a training image was cut from its source capture, as data a program can apply.

A classifier trained on BloodMNIST never saw a microscope frame: it saw a centred 200 x 200 px window
of a 360 x 363 PBC capture, resized (PIL bilinear) to 28 or 64 px, and for the official 28 px file
saved as JPEG quality 75 and read back. Fed the whole frame, cells appear at ~0.56x their training
size and the model collapses onto one class (21-25 % accuracy on the val originals, measured). So the framing travels
with the model (run.json, every artifact's metadata, the model card) and every tool that reads
captures applies it by default.

Kinds of framing:

``window``    a fixed centred square of ``window_px`` source pixels (BloodMNIST: 200). The window is in
              pixels, not a fraction: a 366 x 369 capture still gives a 200 px window. Offsets are
              ``round((W - side) / 2)``, ``round((H - side) / 2)`` with Python's round (half to even:
              (369 - 200) / 2 = 84.5 -> 84), exactly as the regenerated 64 px file was made.
``fraction``  a centred square whose side is ``fraction`` x the shorter side (for captures at another
              magnification: 0.5556 of a 360 px frame is BloodMNIST's 200 px).
``square``    the largest centred square: for single-cell crops that are already framed like training images.

Then ``resize`` (PIL bilinear, which is antialiased) to the model's input size, then, when
``jpeg_quality`` is set, a JPEG round trip at that quality (Pillow, 4:2:0 chroma), which brings a clean
capture to the pixels of the official 28 px file (mean |difference| 1.5 grey levels on the val
originals; 6.4 without the JPEG step).

``Framing.parse`` reads the one CLI option (``--framing``): ``model`` (exactly what the model was
trained with, JPEG step included), ``cell-crop`` (= ``square``), ``window:200``, ``fraction:0.5556``;
these others carry no JPEG step unless ``+jpeg:Q`` is added (``model+no-jpeg`` drops the model's).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from edgeblood.errors import EdgebloodError

KINDS = ("window", "fraction", "square")
RESIZE_FILTERS = ("bilinear",)
#: BloodMNIST's window: a centred 200 x 200 px square of the 360 x 363 PBC captures (MedMNIST v2).
BLOODMNIST_WINDOW_PX = 200
BLOODMNIST_SOURCE_PX = (360, 363)  # width, height of most PBC captures
#: The official 28 px BloodMNIST file was JPEG-compressed at this quality by MedMNIST's pipeline.
BLOODMNIST_28_JPEG_QUALITY = 75
FRAMING_OPTION_HELP = (
    "How to cut the model input from each image: 'model' (default: the framing the model was trained with, "
    "e.g. BloodMNIST's centred 200x200 px window of a 360x363 capture), 'cell-crop' (the image is already a "
    "single-cell crop framed like training images: largest centred square), 'window:PX' (a fixed centred window "
    "of PX source pixels), 'fraction:F' (a centred square of F x the shorter side). Append '+no-jpeg' or "
    "'+jpeg:Q' to drop or set the JPEG round trip."
)


@dataclass(frozen=True)
class Framing:
    """One framing recipe; ``to_dict`` is what run.json and artifact metadata store."""

    kind: str = "window"
    window_px: int | None = BLOODMNIST_WINDOW_PX
    fraction: float | None = None
    resize: str = "bilinear"
    jpeg_quality: int | None = None
    # a window larger than the image is filled with the median colour of the image's border (the smear's
    # background) instead of refused: tightly cropped cells from a lab with a smaller pixel scale (edgeblood.pixel_scale)
    pad: bool = False
    # what the training images were cut from, for people ("360x363 px PBC capture"); not part of equality
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EdgebloodError(f"unknown framing kind '{self.kind}'; choose one of {', '.join(KINDS)}")
        if self.kind == "window" and (not isinstance(self.window_px, int) or self.window_px < 1):
            raise EdgebloodError(f"a window framing needs a window size in pixels >= 1, got {self.window_px!r}; e.g. --framing window:200")
        if self.kind == "fraction" and not (isinstance(self.fraction, (int, float)) and 0.0 < self.fraction <= 1.0):
            raise EdgebloodError(f"a fraction framing needs a fraction in (0, 1], got {self.fraction!r}; e.g. --framing fraction:0.5556")
        if self.resize not in RESIZE_FILTERS:
            raise EdgebloodError(f"unknown resize filter '{self.resize}'; edgeblood resizes with {', '.join(RESIZE_FILTERS)}")
        if self.jpeg_quality is not None and not (isinstance(self.jpeg_quality, int) and 1 <= self.jpeg_quality <= 100):
            raise EdgebloodError(f"JPEG quality must be an integer in 1..100, got {self.jpeg_quality!r}")

    # ------------------------------------------------------------------------------------- storage
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.pad:  # written only where used, so framings stored before it existed read back equal
            d.pop("pad")
        d["description"] = self.describe()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Framing":
        """Validate a stored framing (from run.json or an artifact made elsewhere) before use."""
        if not isinstance(d, dict):
            raise EdgebloodError(f"framing metadata must be a mapping, got {type(d).__name__}; re-export the model with `edgeblood export`")
        known = {"kind", "window_px", "fraction", "resize", "jpeg_quality", "source", "pad"}
        return cls(**{k: v for k, v in d.items() if k in known})

    # ----------------------------------------------------------------------------------- parsing
    @classmethod
    def parse(cls, text: str, model_framing: "Framing | None" = None) -> "Framing":
        """The ``--framing`` option: ``model``, ``cell-crop``, ``window:PX``, ``fraction:F``, plus ``+jpeg:Q``/``+no-jpeg``."""
        text = (text or "model").strip().lower()
        head, *mods = [part.strip() for part in text.split("+")]
        name, _, arg = head.partition(":")
        if name == "model":
            base = model_framing or cls()
        elif name in ("cell-crop", "square", "crop"):
            base = cls(kind="square", window_px=None, source="single-cell crops framed like training images")
        elif name == "window":
            base = cls(kind="window", window_px=_number(arg, int, head), source=(model_framing.source if model_framing else ""))
        elif name == "fraction":
            base = cls(kind="fraction", window_px=None, fraction=_number(arg, float, head))
        else:
            raise EdgebloodError(f"unknown framing '{text}'; use model, cell-crop, window:PX or fraction:F (optionally +no-jpeg or +jpeg:Q)")
        for mod in mods:
            key, _, value = mod.partition(":")
            if key == "no-jpeg":
                base = replace(base, jpeg_quality=None)
            elif key == "jpeg":
                base = replace(base, jpeg_quality=_number(value, int, mod))
            else:
                raise EdgebloodError(f"unknown framing modifier '+{mod}'; use +no-jpeg or +jpeg:Q")
        return base

    # ------------------------------------------------------------------------------------ meaning
    def describe(self) -> str:
        """One line a person reads next to every figure made with this framing."""
        if self.kind == "window":
            where = f"centred {self.window_px}x{self.window_px} px window"
        elif self.kind == "fraction":
            where = f"centred square of {self.fraction:.4g} x the shorter side"
        else:
            where = "largest centred square (cell crop)"
        of = f" of the {self.source}" if self.source and self.kind != "square" else ""
        jpeg = f", JPEG q{self.jpeg_quality} round trip" if self.jpeg_quality else ""
        pad = " (background-padded where the image is smaller)" if self.pad else ""
        return f"{where}{of}{pad}, {self.resize} resize{jpeg}"

    def short(self) -> str:
        """The ``--framing`` spelling of this framing (round-trips through ``parse``)."""
        head = f"window:{self.window_px}" if self.kind == "window" else f"fraction:{self.fraction:g}" if self.kind == "fraction" else "cell-crop"
        return head + (f"+jpeg:{self.jpeg_quality}" if self.jpeg_quality else "+no-jpeg")

    def square_box(self, width: int, height: int) -> tuple[int, int, int]:
        """(left, top, side) of the square cut from a ``width`` x ``height`` image, in source pixels."""
        short_side = min(width, height)
        if self.kind == "window":
            side = int(self.window_px)
            if side > short_side and not self.pad:
                raise EdgebloodError(
                    f"image is {width}x{height} px, smaller than the model's {side}x{side} px capture window; if your microscope's "
                    "pixel scale differs from training pass --red-cell-px N (or auto), if the files are single-cell crops already "
                    "framed like training images --framing cell-crop, else --framing fraction:F"
                )
        elif self.kind == "fraction":
            side = max(1, int(round(short_side * float(self.fraction))))
        else:
            side = short_side
        return int(round((width - side) / 2)), int(round((height - side) / 2)), side

    def apply(self, rgb: np.ndarray, size: int) -> np.ndarray:
        """uint8 H x W x 3 RGB capture -> uint8 ``size`` x ``size`` x 3 model input, framed as in training."""
        from PIL import Image

        h, w = rgb.shape[:2]
        if self.pad and self.kind == "window" and int(self.window_px) > min(w, h):
            rgb = pad_to(rgb, int(self.window_px))
            h, w = rgb.shape[:2]
        left, top, side = self.square_box(w, h)
        square = np.ascontiguousarray(rgb[top : top + side, left : left + side])
        out = square if side == size else np.asarray(Image.fromarray(square, "RGB").resize((size, size), Image.Resampling.BILINEAR))
        return jpeg_round_trip(out, self.jpeg_quality) if self.jpeg_quality else np.ascontiguousarray(out)


def pad_to(rgb: np.ndarray, side: int) -> np.ndarray:
    """Centre ``rgb`` on a canvas at least ``side`` px each way, filled with the median colour of its border."""
    h, w = rgb.shape[:2]
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    canvas = np.empty((max(h, side), max(w, side), 3), np.uint8)
    canvas[:] = np.median(border, axis=0).astype(np.uint8)
    top, left = (canvas.shape[0] - h) // 2, (canvas.shape[1] - w) // 2
    canvas[top:top + h, left:left + w] = rgb
    return canvas


def jpeg_round_trip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Save as JPEG at ``quality`` (Pillow defaults: 4:2:0 chroma) and decode again, as MedMNIST did."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(buf, "JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def bloodmnist_framing(size: int, variant: str = "official") -> Framing:
    """The framing of a BloodMNIST file: the 200 px window, plus the JPEG step of the official 28 px file."""
    jpeg = BLOODMNIST_28_JPEG_QUALITY if size == 28 and not str(variant).startswith("regenerated") else None
    w, h = BLOODMNIST_SOURCE_PX
    return Framing(kind="window", window_px=BLOODMNIST_WINDOW_PX, jpeg_quality=jpeg, source=f"{w}x{h} px PBC capture")


def framing_of(metadata: dict) -> tuple[Framing, bool]:
    """The framing stored in run metadata; for runs made before framing was recorded, derived from the
    dataset (every such run is a BloodMNIST run). Returns (framing, was_recorded)."""
    ds = metadata.get("dataset") or {}
    size = ds.get("size") or (metadata.get("input") or {}).get("size")
    return stored_or_dataset_framing((metadata.get("input") or {}).get("framing"), size, ds.get("variant"))


def stored_or_dataset_framing(stored: Any, dataset_size: Any, dataset_variant: Any) -> tuple[Framing, bool]:
    """A stored framing (validated), or BloodMNIST's for that file when none was stored: (framing, was_stored).

    Shared by run metadata (``framing_of``) and flat artifact metadata (``edgeblood.inference``).
    """
    if isinstance(stored, dict) and stored:
        return Framing.from_dict(stored), True
    return bloodmnist_framing(int(dataset_size or 28), str(dataset_variant or "official")), False


def _number(text: str, kind: type, where: str):
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise EdgebloodError(f"framing '{where}' needs a {'whole number' if kind is int else 'number'} after ':', e.g. window:200 or fraction:0.5556") from None

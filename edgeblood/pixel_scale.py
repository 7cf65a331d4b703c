"""A lab's pixel scale as a first-class input: "my red cells are 40 px across" or "0.19 µm per pixel".

BloodMNIST's framing is a 200 px window of PBC captures, where a red cell is about 73 px across
(CellaVision DM96). A lab whose camera gives another pixel size must cut a window covering the same
area of the smear, or its cells reach the model at the wrong size (issue #26: the other lab's cells at
1.8x smaller pixel scale). ``rescale`` turns the model's framing into that window; ``estimate`` offers
a scale from unlabelled images when the user does not know it, by matching how much of the window the
stained cells fill to the training images (the ``dark_share`` statistic of edgeblood.domain).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edgeblood.errors import EdgebloodError
from edgeblood.framing import Framing

#: A red cell's diameter in PBC captures (the BloodMNIST source), in pixels, and in micrometres (a normal RBC).
TRAINING_RED_CELL_PX = 73.0
RED_CELL_UM = 7.5
TRAINING_WINDOW_PX = 200  # BloodMNIST: a 200 px window of the PBC captures
RED_CELL_PX_RANGE = (8.0, 1000.0)
UM_PER_PX_RANGE = (0.005, 2.0)
SCALED_SOURCE = "px per red cell"  # the end of a rescaled window's ``source``


def red_cell_px(red_cell: float | None = None, um_per_px: float | None = None) -> float | None:
    """The lab's red-cell diameter in pixels from either option (None when neither is given); absurd values are one line."""
    if red_cell is not None and um_per_px is not None:
        raise EdgebloodError("give the pixel scale once: --red-cell-px or --um-per-px, not both")
    if um_per_px is not None:
        lo, hi = UM_PER_PX_RANGE
        if not lo <= um_per_px <= hi:
            raise EdgebloodError(f"--um-per-px {um_per_px:g} is not a microscope's pixel size (expected {lo:g}-{hi:g} µm per pixel; "
                                 f"PBC's is about {RED_CELL_UM / TRAINING_RED_CELL_PX:.3f})")
        return RED_CELL_UM / um_per_px
    if red_cell is not None:
        lo, hi = RED_CELL_PX_RANGE
        if not lo <= red_cell <= hi:
            raise EdgebloodError(f"--red-cell-px {red_cell:g} is not a red cell's diameter in pixels (expected {lo:g}-{hi:g}; "
                                 f"in the training captures it is about {TRAINING_RED_CELL_PX:g})")
        return float(red_cell)
    return None


def rescale(framing: Framing, lab_red_cell_px: float, reference_px: float = TRAINING_RED_CELL_PX) -> Framing:
    """The model's framing for a lab whose red cells are ``lab_red_cell_px`` across: a centred window covering
    the same area of the smear as training did, background-padded where an image is smaller."""
    if framing.kind != "window":
        raise EdgebloodError(f"a pixel scale rescales a capture window; the model's framing is '{framing.describe()}'. "
                             "Use --framing window:PX with the window the lab's captures need")
    side = max(8, int(round(framing.window_px * lab_red_cell_px / reference_px)))
    return replace(framing, window_px=side, pad=True, source=f"capture at {lab_red_cell_px:g} {SCALED_SOURCE}")


def is_rescaled(framing: Framing) -> bool:
    """Whether ``framing`` is a model's window rescaled to a lab's pixel scale (the user's choice, not a mistake)."""
    return (framing.source or "").endswith(SCALED_SOURCE)


def estimate_red_cell_px(files: list, size: int, framing: Framing, training_dark_share: float,
                         candidates: np.ndarray | None = None, max_files: int = 200) -> tuple[float, dict[float, float]]:
    """(estimated red-cell px, {candidate: median dark share}) from unlabelled images.

    The share of stained pixels in the window falls as the window grows; where the images' median share
    crosses the training images' (``_crossing``) is the estimate. A rough guide (±15 % on the other-lab
    set here), which is why it is offered, not applied silently. At most ``max_files`` files, spread evenly
    over the list; each is decoded once and every candidate window is cut from the decoded pixels.
    """
    import torch

    from edgeblood.domain.scorer import IMAGE_STATS, image_statistics
    from edgeblood.imageio import read_pixels, to_rgb_uint8

    if candidates is None:
        candidates = np.round(np.geomspace(25, 200, 22), 1)
    files = list(files)
    captures = []
    for f in files[:: max(1, -(-len(files) // max_files))]:  # spread over the folder: class folders come sorted
        try:
            captures.append(to_rgb_uint8(read_pixels(f), f))
        except EdgebloodError:  # an unreadable file is predict's to report; the estimate uses the rest
            continue
    if not captures:
        raise EdgebloodError(f"none of the {len(files)} files could be read to estimate the pixel scale; give --red-cell-px N")
    dark = IMAGE_STATS.index("dark_share")
    shares: dict[float, float] = {}
    for px in candidates:
        window = rescale(framing, float(px))
        images = np.stack([window.apply(rgb, size) for rgb in captures])
        stats = image_statistics(torch.from_numpy(images).permute(0, 3, 1, 2).float()).numpy()
        shares[float(px)] = float(np.median(stats[:, dark]))
    return _crossing(shares, training_dark_share), shares


def _crossing(shares: dict[float, float], target: float) -> float:
    """The largest candidate whose share still reaches ``target``, interpolated (in log px) towards the next.

    Searched from the wide-window end: there the share falls steadily as the window grows; at windows
    much smaller than a cell it falls again (the window lies inside the cell), a second crossing to ignore.
    """
    pxs = sorted(shares)
    for small, large in zip(pxs[-2::-1], pxs[:0:-1]):
        if shares[small] >= target > shares[large]:
            t = (shares[small] - target) / (shares[small] - shares[large])
            return float(round(np.exp(np.log(small) + t * (np.log(large) - np.log(small))), 1))
    return float(pxs[0] if shares[pxs[0]] < target else pxs[-1])


def scaled_framing(framing: Framing, red_cell: float | None, um_per_px: float | None) -> Framing:
    """``framing`` rescaled to the pixel scale given by --red-cell-px / --um-per-px (unchanged when neither is given)."""
    px = red_cell_px(red_cell, um_per_px)
    if px is None:
        return framing
    if framing.kind == "square":  # a cell crop at another scale: the crop is the window, the scale sets its size
        framing = Framing(kind="window", window_px=TRAINING_WINDOW_PX, resize=framing.resize, jpeg_quality=framing.jpeg_quality)
    return rescale(framing, px)


#: How far (as a share of the training scale) an estimate may lie before an unscaled run gets a hint.
HINT_TOLERANCE = 0.15
#: The fewest images an unasked-for estimate is made from: on a handful of cells the median is noise.
MIN_HINT_IMAGES = 10


def parse_red_cell_option(text: str | float | None) -> tuple[float | None, bool]:
    """(--red-cell-px as a number, whether it said 'auto'); one line for anything else."""
    if text is None or isinstance(text, (int, float)):
        return (None if text is None else float(text)), False
    if text.strip().lower() == "auto":
        return None, True
    try:
        return float(text), False
    except ValueError:
        raise EdgebloodError(f"--red-cell-px takes a number of pixels (e.g. 40) or 'auto', got '{text}'") from None


def training_dark_share(domain_section: dict | None) -> float | None:
    """The training images' median share of stained pixels, from a run's or artifact's domain section."""
    from edgeblood.domain.scorer import IMAGE_STATS

    stats = (domain_section or {}).get("image_stats") or {}
    names, mean = stats.get("names", list(IMAGE_STATS)), stats.get("mean") or []
    index = names.index("dark_share") if "dark_share" in names else None
    return None if index is None or index >= len(mean) else float(mean[index])


@dataclass(frozen=True)
class ScaleChoice:
    """The pixel scale a command frames with, where it came from, and the images' estimate when one was made.

    One decision shared by predict, evaluate --images and adapt, so "auto" and the hint mean the same everywhere.
    """

    red_cell_px: float | None  # None: the model's own framing
    source: str | None = None
    estimate: float | None = None

    def note(self) -> dict | None:
        """What a run records about its scale (adapt's run.json), None when none was applied."""
        return None if self.red_cell_px is None else {"red_cell_px": self.red_cell_px, "source": self.source}

    def hint(self) -> str | None:
        """A line for a user who gave no scale while the images look like another one."""
        if self.red_cell_px is not None or self.estimate is None:
            return None
        if abs(self.estimate / TRAINING_RED_CELL_PX - 1) <= HINT_TOLERANCE:
            return None
        return (f"pixel scale: these images look like {self.estimate:g} px per red cell (training captures: {TRAINING_RED_CELL_PX:g}); "
                f"if so, pass --red-cell-px {self.estimate:g} (or auto), or measure a red cell")

    def framing(self, base: Framing) -> Framing:
        return scaled_framing(base, self.red_cell_px, None)


def choose_scale(red_cell: str | float | None, um_per_px: float | None, *, files: list, size: int, framing: Framing,
                 dark_share: float | None, estimate_unset: bool = False) -> ScaleChoice:
    """The scale to frame with: given (--red-cell-px N / --um-per-px U), estimated (--red-cell-px auto), or none.

    With ``estimate_unset`` and no scale given, the images' estimate is still made (for ``hint``) when the
    model carries the training images' statistics and there are enough images to judge.
    """
    number, auto = parse_red_cell_option(red_cell)
    if auto and um_per_px is not None:
        raise EdgebloodError("give the pixel scale once: --red-cell-px auto or --um-per-px, not both")
    given = red_cell_px(number, um_per_px)
    if given is not None:
        return ScaleChoice(given, "given" + (f" as {um_per_px:g} µm per pixel" if um_per_px is not None else ""))
    if not auto and not (estimate_unset and len(files) >= MIN_HINT_IMAGES and framing.kind != "fraction"):
        return ScaleChoice(None)  # (a fraction of each image has no pixel scale to compare)
    if dark_share is None:
        if auto:
            raise EdgebloodError("this model carries no domain profile to estimate the pixel scale from (trained or exported before "
                                 "the domain check); give --red-cell-px N or --um-per-px U")
        return ScaleChoice(None)
    reference = scaled_framing(framing, TRAINING_RED_CELL_PX, None)
    estimate, _ = estimate_red_cell_px(files, size, reference, dark_share)
    if auto:
        return ScaleChoice(estimate, "estimated from the images (edgeblood.pixel_scale)", estimate)
    return ScaleChoice(None, None, estimate)


def scale_hint(files: list, *, size: int, framing: Framing, dark_share: float | None) -> str | None:
    """A line suggesting --red-cell-px when unscaled images look like another pixel scale (None otherwise)."""
    return choose_scale(None, None, files=files, size=size, framing=framing, dark_share=dark_share, estimate_unset=True).hint()

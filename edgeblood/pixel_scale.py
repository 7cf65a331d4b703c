"""A lab's pixel scale as a first-class input: "my red cells are 40 px across" or "0.19 µm per pixel".

BloodMNIST's framing is a 200 px window of PBC captures, where a red cell is about 73 px across
(CellaVision DM96). A lab whose camera gives another pixel size must cut a window covering the same
area of the smear, or its cells reach the model at the wrong size (issue #26: the other lab's cells at
1.8x smaller pixel scale). ``rescale`` turns the model's framing into that window; ``estimate`` offers
a scale from unlabelled images when the user does not know it, by matching how much of the window the
stained cells fill to the training images (the ``dark_share`` statistic of edgeblood.domain).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgeblood.errors import EdgebloodError
from edgeblood.framing import Framing

#: A red cell's diameter in PBC captures (the BloodMNIST source), in pixels, and in micrometres (a normal RBC).
TRAINING_RED_CELL_PX = 73.0
RED_CELL_UM = 7.5
TRAINING_WINDOW_PX = 200  # BloodMNIST: a 200 px window of the PBC captures
RED_CELL_PX_RANGE = (8.0, 1000.0)
UM_PER_PX_RANGE = (0.005, 2.0)


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
    return replace(framing, window_px=side, pad=True, source=f"capture at {lab_red_cell_px:g} px per red cell")


def estimate_red_cell_px(files: list, size: int, framing: Framing, training_dark_share: float,
                         candidates: np.ndarray | None = None, max_files: int = 200) -> tuple[float, dict[float, float]]:
    """(estimated red-cell px, {candidate: median dark share}) from unlabelled images.

    The share of stained pixels in the window falls as the window grows; where the images' median share
    crosses the training images' (``_crossing``) is the estimate. A rough guide (±15 % on the other-lab
    set here), which is why it is offered, not applied silently. Each file is decoded once; every
    candidate window is cut from the decoded pixels.
    """
    import torch

    from edgeblood.domain.scorer import IMAGE_STATS, image_statistics
    from edgeblood.imageio import read_pixels, to_rgb_uint8

    if candidates is None:
        candidates = np.round(np.geomspace(25, 200, 22), 1)
    captures = [to_rgb_uint8(read_pixels(f), f) for f in list(files)[:max_files]]
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

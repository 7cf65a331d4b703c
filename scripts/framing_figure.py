#!/usr/bin/env python3
"""docs/framing.png: one PBC capture, BloodMNIST's window drawn on it, and the model inputs it becomes.

    python scripts/framing_figure.py [CAPTURE.jpg] [--out docs/framing.png]

Default capture: the first lymphocyte of ``$EDGEBLOOD_DATA/pbc-originals/val`` (PBC dataset, Acevedo
et al. 2020, CC BY 4.0). Panels: the capture with the 200x200 px window, the 28 px input (window,
bilinear, JPEG q75: the official file's pipeline), the 64 px input, and what the whole frame becomes
(the framing `predict` used before it was part of the contract).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from edgeblood.framing import Framing, bloodmnist_framing
    from edgeblood.imageio import read_pixels, to_rgb_uint8

    default = next(iter(sorted((Path(os.environ.get("EDGEBLOOD_DATA", "../shared/data")) / "pbc-originals" / "val" / "lymphocyte").glob("*.jpg"))), None)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", nargs="?", type=Path, default=default)
    parser.add_argument("--out", type=Path, default=Path("docs/framing.png"))
    args = parser.parse_args()
    if args.capture is None:
        raise SystemExit("no capture given and none found under $EDGEBLOOD_DATA/pbc-originals/val")
    rgb = to_rgb_uint8(read_pixels(args.capture))
    h, w = rgb.shape[:2]
    f28, f64 = bloodmnist_framing(28), bloodmnist_framing(64, "regenerated")
    left, top, side = f28.square_box(w, h)
    panels = [
        (f28.apply(rgb, 28), "28 px model input\nwindow, bilinear, JPEG q75\n(official BloodMNIST)"),
        (f64.apply(rgb, 64), "64 px model input\nwindow, bilinear\n(regenerated 64 px file)"),
        (Framing(kind="square", window_px=None).apply(rgb, 28), "whole frame at 28 px\n(wrong: cells at 0.56x;\n21 % val accuracy, measured)"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1.6, 1, 1, 1]})
    axes[0].imshow(rgb)
    axes[0].add_patch(Rectangle((left - 0.5, top - 0.5), side, side, fill=False, edgecolor="yellow", linewidth=2))
    axes[0].set_title(f"capture {w}x{h} px ({args.capture.name})\nyellow: centred {side}x{side} px window at ({left}, {top})", fontsize=9)
    for ax, (img, title) in zip(axes[1:], panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.text(0.5, 0.01, "PBC dataset (Acevedo et al., Data in Brief 2020, CC BY 4.0) via MedMNIST v2", ha="center", fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

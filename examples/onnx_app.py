#!/usr/bin/env python3
"""Classify a folder of blood-cell images with an edgeblood ONNX model - onnxruntime, numpy and Pillow only.

    pip install onnxruntime numpy pillow
    python onnx_app.py runs/se-cnn/export/model.onnx cells/ --top-k 3 --reject-below 0.7

Everything model-specific (class names, input size) is read from the model's metadata_props, and the
normalisation is inside the graph: the app only has to hand over RGB pixels 0-255, float32, NCHW.
Each capture is framed as the training images were (the 'framing' metadata: for BloodMNIST a centred
200x200 px window, PIL bilinear, JPEG q75 for the 28 px file); --framing cell-crop for ready cell crops.

Output: one CSV line per image (file, predicted class, probability, top-k, review flag, outside flag)
on stdout; unreadable files are reported on stderr and skipped.

The domain check: models exported with it have a third output, ``domain`` [N, 2] (how far the image's
features and pixel statistics lie from the training data, each divided by its threshold). Above 1 means
the image does not look like what the model learnt from (another lab, stain or microscope): its
prediction is unreliable whatever its probability. The app flags such images ("outside") and warns
once when many of a folder are.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


def load_cell(path: Path, size: int, framing: dict | None) -> np.ndarray:
    """Image file -> uint8 [size, size, 3] RGB: alpha onto white, grey replicated, then framed as in training."""
    with Image.open(path) as img:
        img.load()
        if img.mode in ("RGBA", "LA", "PA", "P"):
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, rgba)
        img = img.convert("RGB")
    return frame(img, size, framing)


def frame(img: Image.Image, size: int, framing: dict | None) -> np.ndarray:
    """Cut the model input from a capture as the model's "framing" metadata says (None: a cell crop).

    BloodMNIST models: a centred 200x200 px window (offsets rounded with Python's round), PIL bilinear
    resize, and for the official 28 px file a JPEG quality-75 round trip.
    """
    framing = framing or {"kind": "square", "jpeg_quality": None}
    short = min(img.size)
    if framing["kind"] == "window":
        side = int(framing["window_px"])
        if side > short:
            raise ValueError(f"{img.width}x{img.height} px is smaller than the {side} px training window; use --framing cell-crop for cell crops")
    elif framing["kind"] == "fraction":
        side = max(1, round(short * float(framing["fraction"])))
    else:
        side = short
    left, top = round((img.width - side) / 2), round((img.height - side) / 2)
    img = img.crop((left, top, left + side, top + side))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    if framing.get("jpeg_quality"):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(framing["jpeg_quality"]))
        buf.seek(0)
        img = Image.open(buf).convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and not p.name.startswith("."))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="model.onnx exported by `edgeblood export`")
    parser.add_argument("folder", type=Path, help="folder of cell images (searched recursively)")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--framing", choices=("model", "cell-crop"), default="model",
                        help="model: cut each capture as the training images were (the model's framing metadata); "
                             "cell-crop: the images are single-cell crops already framed like training images")
    parser.add_argument("--reject-below", type=float, default=0.7, help="flag images whose top probability is lower")
    args = parser.parse_args()

    session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map  # edgeblood's contract: string -> string
    classes = json.loads(meta["classes"])
    size = int(meta["input_size"])
    # how training images were cut from their captures; absent in models exported before edgeblood 0.2
    framing = None if args.framing == "cell-crop" else json.loads(meta.get("framing") or "null")
    input_name = session.get_inputs()[0].name  # "image": float32 [N, 3, size, size], RGB 0-255
    print(f"# {meta.get('model_name', '?')}: {len(classes)} classes, {size} px input, framing: "
          f"{framing['description'] if framing else 'cell crop (largest centred square)'}", file=sys.stderr)

    out = csv.writer(sys.stdout, lineterminator="\n")
    outputs = [o.name for o in session.get_outputs()]
    has_domain = "domain" in outputs  # models exported before the domain check have no such output
    out.writerow(["file", "predicted", "probability", "top_k", "review", "outside"])
    failed = flagged = outside = done = 0
    for path in image_files(args.folder):
        try:
            pixels = load_cell(path, size, framing)
        except Exception as exc:  # unreadable file: report and go on with the rest
            print(f"skipped {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        batch = pixels.transpose(2, 0, 1)[None].astype(np.float32)  # HWC uint8 -> NCHW float32 0-255
        results = session.run(["probabilities"] + (["domain"] if has_domain else []), {input_name: batch})
        probs = results[0][0]
        foreign = bool(has_domain and (results[1][0] > 1).any())
        outside += int(foreign)
        done += 1
        order = np.argsort(-probs)[: args.top_k]
        review = probs[order[0]] < args.reject_below
        flagged += int(review)
        top = ";".join(f"{classes[i]}:{probs[i]:.4f}" for i in order)
        out.writerow([str(path), classes[order[0]], f"{probs[order[0]]:.6f}", top, "yes" if review else "no",
                      ("yes" if foreign else "no") if has_domain else ""])
    print(f"# {flagged} flagged for review (top probability < {args.reject_below}), {failed} unreadable", file=sys.stderr)
    if has_domain and done and outside / done > 0.15:  # the thresholds flag ~4 % of the training lab's own images
        print(f"# WARNING: {outside} of {done} images do not look like the training data (another lab, stain or "
              "microscope?): predictions on them are unreliable", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

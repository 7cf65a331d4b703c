#!/usr/bin/env python3
"""Classify a folder of blood-cell images with an edgeblood OpenVINO IR - openvino, numpy and Pillow only.

    pip install openvino numpy pillow
    python openvino_app.py runs/se-cnn/export/openvino/model.xml cells/ --device CPU --reject-below 0.7

Class names and input size are read from the IR's rt_info (section "edgeblood", written by
`edgeblood export`); the normalisation is inside the graph, so the app hands over RGB pixels 0-255,
float32, NCHW. Each capture is framed as the training images were (the 'framing' entry: for
BloodMNIST a centred 200x200 px window, PIL bilinear, JPEG q75 for the 28 px file); --framing
cell-crop for ready cell crops. Images go through the model in batches (the batch dimension is dynamic).

Output: one CSV line per image (file, predicted class, probability, top-k, review flag) on stdout;
unreadable files are reported on stderr and skipped.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import openvino as ov
from PIL import Image

EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
BATCH = 32


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


def contract(model: ov.Model, key: str) -> str:
    """One value of the edgeblood contract stored in rt_info (strings; lists are JSON)."""
    return model.get_rt_info(["edgeblood", key]).astype(str)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="model.xml (with model.bin beside it) exported by `edgeblood export`")
    parser.add_argument("folder", type=Path, help="folder of cell images (searched recursively)")
    parser.add_argument("--device", default="CPU", help="OpenVINO device: CPU, GPU, NPU, AUTO")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--framing", choices=("model", "cell-crop"), default="model",
                        help="model: cut each capture as the training images were (the model's framing metadata); "
                             "cell-crop: the images are single-cell crops already framed like training images")
    parser.add_argument("--reject-below", type=float, default=0.7, help="flag images whose top probability is lower")
    args = parser.parse_args()

    core = ov.Core()
    model = core.read_model(args.model)
    classes = json.loads(contract(model, "classes"))
    size = int(contract(model, "input_size"))
    # how training images were cut from their captures (the rt_info key exists in models exported by edgeblood >= 0.2)
    has_framing = model.has_rt_info(["edgeblood", "framing"])
    framing = json.loads(contract(model, "framing")) if args.framing == "model" and has_framing else None
    # Keep fp32 arithmetic on CPUs that would otherwise pick bf16 (the IR's accuracy was checked in fp32).
    config = {"INFERENCE_PRECISION_HINT": "f32"} if args.device.upper() == "CPU" else {}
    compiled = core.compile_model(model, args.device, config)
    probabilities = compiled.output("probabilities")
    print(f"# {contract(model, 'model_name')}: {len(classes)} classes, {size} px input, {args.device}, framing: "
          f"{framing['description'] if framing else 'cell crop (largest centred square)'}", file=sys.stderr)

    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["file", "predicted", "probability", "top_k", "review"])
    files, pixels, failed, flagged = [], [], 0, 0

    def flush() -> None:
        nonlocal flagged
        if not files:
            return
        batch = np.stack(pixels).transpose(0, 3, 1, 2).astype(np.float32)  # NHWC uint8 -> NCHW float32 0-255
        for path, probs in zip(files, compiled(batch)[probabilities]):
            order = np.argsort(-probs)[: args.top_k]
            review = probs[order[0]] < args.reject_below
            flagged += int(review)
            top = ";".join(f"{classes[i]}:{probs[i]:.4f}" for i in order)
            out.writerow([str(path), classes[order[0]], f"{probs[order[0]]:.6f}", top, "yes" if review else "no"])
        files.clear()
        pixels.clear()

    for path in image_files(args.folder):
        try:
            pixels.append(load_cell(path, size, framing))
            files.append(path)
        except Exception as exc:  # unreadable file: report and go on with the rest
            print(f"skipped {path}: {exc}", file=sys.stderr)
            failed += 1
        if len(files) == BATCH:
            flush()
    flush()
    print(f"# {flagged} flagged for review (top probability < {args.reject_below}), {failed} unreadable", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

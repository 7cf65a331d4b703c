#!/usr/bin/env python3
"""Classify a folder of blood-cell images with an edgeblood OpenVINO IR - openvino, numpy and Pillow only.

    pip install openvino numpy pillow
    python openvino_app.py runs/se-cnn/export/openvino/model.xml cells/ --device CPU --reject-below 0.7

Class names and input size are read from the IR's rt_info (section "edgeblood", written by
`edgeblood export`); the normalisation is inside the graph, so the app hands over RGB pixels 0-255,
float32, NCHW. Each image is prepared like BloodMNIST's: center-cropped to a square, resized with PIL
bilinear. Images go through the model in batches (the batch dimension is dynamic).

Output: one CSV line per image (file, predicted class, probability, top-k, review flag) on stdout;
unreadable files are reported on stderr and skipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import openvino as ov
from PIL import Image

EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
BATCH = 32


def load_cell(path: Path, size: int) -> np.ndarray:
    """Image file -> uint8 [size, size, 3] RGB: alpha onto white, grey replicated, center square crop, bilinear."""
    with Image.open(path) as img:
        img.load()
        if img.mode in ("RGBA", "LA", "PA", "P"):
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, rgba)
        img = img.convert("RGB")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
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
    parser.add_argument("--reject-below", type=float, default=0.7, help="flag images whose top probability is lower")
    args = parser.parse_args()

    core = ov.Core()
    model = core.read_model(args.model)
    classes = json.loads(contract(model, "classes"))
    size = int(contract(model, "input_size"))
    # Keep fp32 arithmetic on CPUs that would otherwise pick bf16 (the IR's accuracy was checked in fp32).
    config = {"INFERENCE_PRECISION_HINT": "f32"} if args.device.upper() == "CPU" else {}
    compiled = core.compile_model(model, args.device, config)
    probabilities = compiled.output("probabilities")
    print(f"# {contract(model, 'model_name')}: {len(classes)} classes, {size} px input, {args.device}", file=sys.stderr)

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
            pixels.append(load_cell(path, size))
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

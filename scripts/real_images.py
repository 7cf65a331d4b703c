#!/usr/bin/env python3
"""Accuracy on the original PBC captures (the pixels an app sees) next to the npz val split, per framing.

    python scripts/real_images.py runs/se-cnn-28 [runs/se-cnn-64 ...] [--originals DIR]

For each run: its npz val accuracy and per-class recall (metrics.json), then the 1,712 val originals
(``$EDGEBLOOD_DATA/pbc-originals/val``) fed through the exported ONNX model by ``edgeblood predict``'s
library with (1) the whole frame (``--framing cell-crop``: what predict did before framing was part of
the contract), (2) the model's framing (the default), (3) the model's framing without its JPEG step,
and (4) the ``model-capture.onnx`` variant (framing inside the graph). Prints one Markdown table:
accuracy, the change against npz val, and the class whose recall moved most.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--originals", type=Path, default=Path(os.environ.get("EDGEBLOOD_DATA", "../shared/data")) / "pbc-originals" / "val")
    args = parser.parse_args()

    from edgeblood.data.labelled_images import read_labelled_images
    from edgeblood.evaluation.evaluate import read_metrics
    from edgeblood.exporters.capture import capture_predictor
    from edgeblood.framing import Framing
    from edgeblood.imageio import read_pixels, to_rgb_uint8
    from edgeblood.inference import open_model, predict_files
    from edgeblood.runs import open_run

    print("| run | fed as | val accuracy | vs npz val | largest recall change vs npz val | collapse warning |")
    print("| --- | --- | ---: | ---: | --- | --- |")
    for run_dir in args.runs:
        run = open_run(run_dir)
        npz = read_metrics(run.dir).get("val")
        if npz is None:
            print(f"{run_dir}: no val entry in metrics.json; run `edgeblood evaluate {run_dir} --split val`", file=sys.stderr)
            return 2
        items = read_labelled_images(args.originals, run.classes, run.meta.class_names_full)
        truth = {str(f): int(y) for f, y in zip(items.files, items.labels)}
        npz_recall = np.array([npz["per_class"][c]["recall"] for c in run.classes])
        print(f"| {run.name} | npz val ({npz['num_samples']} arrays) | {100 * npz['accuracy']:.2f} % | - | - | - |")
        model = open_model(run.export_dir / "model.onnx")
        for label, framing in (("whole frame (`--framing cell-crop`)", Framing.parse("cell-crop")),
                               (f"default `--framing model` ({model.framing.describe()})", model.framing),
                               ("`--framing model+no-jpeg`", Framing.parse("model+no-jpeg", model.framing))):
            report = predict_files(model, [args.originals], framing=framing)
            pred = np.array([run.classes.index(r.predicted) for r in report.rows])
            y = np.array([truth[r.file] for r in report.rows])
            print(_row(run.name, label, pred, y, npz, npz_recall, run.classes, "yes" if report.warnings else "no"))
        capture = run.export_dir / "model-capture.onnx"
        if capture.exists():
            _, predict = capture_predictor(capture)
            pred = np.array([int(predict(to_rgb_uint8(read_pixels(f))).argmax()) for f in items.files])
            print(_row(run.name, "`model-capture.onnx` (whole frame in, framing in the graph, no JPEG)", pred, items.labels, npz, npz_recall, run.classes, "-"))
    return 0


def _row(name, label, pred, y, npz, npz_recall, classes, warned) -> str:
    acc = float((pred == y).mean())
    recall = np.array([float((pred[y == c] == c).mean()) for c in range(len(classes))])
    k = int(np.argmax(np.abs(recall - npz_recall)))
    return (f"| {name} | {label} | {100 * acc:.2f} % | {100 * (acc - npz['accuracy']):+.2f} pt | "
            f"{classes[k]} {100 * recall[k]:.1f} % ({100 * (recall[k] - npz_recall[k]):+.1f} pt) | {warned} |")


if __name__ == "__main__":
    sys.exit(main())

"""The capture variant of a model: a raw camera frame of any size in, the framing inside the graph.

``model.onnx`` takes the already-framed model input (float32 NCHW, size x size). An app that holds a
whole capture would have to re-implement the window, the rounding and the antialiased resize, which
is where the 25 % accuracy of issue #14 came from. ``model-capture.onnx`` prepends the framing to the
same graph, so the app hands over the frame as it has it:

    input ``capture``: uint8 [N, H, W, 3] RGB (N, H, W dynamic; one frame size per call)
      -> Cast, Transpose to NCHW
      -> centred square: side = window_px (``window``), round(min(H, W) * f) (``fraction``) or min(H, W)
         (``square``); offsets Round((H - side) / 2), Round((W - side) / 2) (ONNX Round is half to even,
         like Python's round and edgeblood.framing)
      -> Resize linear with ``antialias=1`` (opset 18; the PIL-style triangle filter widened by the
         scale), ``half_pixel`` coordinates, then Round and Clip to 0..255 (PIL returns uint8)
      -> the model graph (normalisation inside) -> ``probabilities``, ``label``

This module holds what every format's capture variant shares: the input, the contract it records,
the frames it is checked on and the check against the Python path. Each format builds its own graph:
``edgeblood.exporters.onnx.capture`` (the nodes above) and ``edgeblood.exporters.openvino.capture``
(the same ops, resized with Interpolate-11 ``bilinear_pillow``).

What cannot be in a graph: the JPEG round trip of the official 28 px file. The capture variant
feeds the model clean pixels (recorded in its metadata as ``capture_framing``); models trained with
edgeblood's real-pixel augmentation hold on both (see the README's real-image table).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgeblood.framing import Framing

CAPTURE_INPUT = "capture"


def replace_jpeg(framing: Framing) -> Framing:
    """The framing a graph can hold: the same window and resize, no JPEG round trip."""
    return dataclasses.replace(framing, jpeg_quality=None)


def capture_contract(framing: Framing, metadata: dict[str, str]) -> tuple[dict[str, str], dict]:
    """(artifact metadata, manifest details) of a capture variant, the same for every runtime."""
    in_graph = replace_jpeg(framing)
    meta = dict(metadata, input_name=CAPTURE_INPUT, input_layout="NHWC", input_dtype="uint8", input_shape='["N", "H", "W", 3]',
                capture_framing=in_graph.describe(), variant="capture")
    details = {"variant": "capture", "input": {"name": CAPTURE_INPUT, "shape": ["N", "H", "W", 3], "layout": "NHWC", "dtype": "uint8",
                                                "range": [0, 255], "channel_order": "RGB"},
               "framing_in_graph": in_graph.to_dict(), "not_in_graph": ["JPEG round trip"] if framing.jpeg_quality else []}
    return meta, details


def capture_predictor(artifact: str | Path):
    """A function frame (uint8 H x W x 3) -> probabilities [C], through the artifact's own runtime."""
    artifact = Path(artifact)
    if artifact.suffix == ".onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
        return "onnxruntime", lambda frame: sess.run(["probabilities"], {CAPTURE_INPUT: frame[None]})[0][0]
    import openvino as ov

    compiled = ov.Core().compile_model(str(artifact), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    port = compiled.output("probabilities")
    return "openvino", lambda frame: compiled({CAPTURE_INPUT: frame[None]})[port][0]


def load_capture_parity_frames(run, data_dir=None, n_images: int | None = 256):
    """(frames, labels, description): the PBC val originals when they are here (``<data>/pbc-originals/val``),
    else synthetic captures made from test images (each upscaled into the training window of a 360x363 frame)."""
    import numpy as np

    from edgeblood.data.bloodmnist import candidate_dirs
    from edgeblood.data.image_folder import load_folder_for_run
    from edgeblood.data.labelled_images import read_labelled_images
    from edgeblood.imageio import read_pixels, to_rgb_uint8
    from edgeblood.parity import own_data_dir, select_indices

    if run.meta.dataset.is_folder:  # the lab's own files are the captures; PBC's may not even share its classes
        data = load_folder_for_run(run.meta)
        labels = data.labels("test")
        idx = select_indices(labels, n_images)
        frames = [to_rgb_uint8(read_pixels(data.split_files["test"][i])) for i in idx]
        return frames, labels[idx], f"test split of the image folder {data.root}"
    for folder in candidate_dirs(own_data_dir(run, data_dir)):  # the run's own data folder (run.json) when nothing else has it
        originals = folder / "pbc-originals" / "val"
        if originals.is_dir():
            items = read_labelled_images(originals, run.classes, run.meta.class_names_full)
            idx = select_indices(items.labels, n_images)
            frames = [to_rgb_uint8(read_pixels(items.files[i])) for i in idx]
            return frames, items.labels[idx], f"PBC val originals ({originals})"
    from edgeblood.parity import load_parity_data

    data = load_parity_data(run, n_images, data_dir=data_dir)
    from PIL import Image

    framing = run.framing
    frames = []
    for img in data.images.transpose(0, 2, 3, 1).astype(np.uint8):
        side = framing.window_px if framing.kind == "window" else 200
        canvas = np.empty((363, 360, 3), np.uint8)
        canvas[:] = img[0, 0]
        left, top, _ = Framing(kind="window", window_px=side).square_box(360, 363)
        canvas[top : top + side, left : left + side] = np.asarray(Image.fromarray(img).resize((side, side), Image.Resampling.BILINEAR))
        frames.append(canvas)
    return frames, data.labels, f"synthetic 360x363 captures from {len(frames)} {data.description} test images"


def check_capture_parity(artifact: str | Path, run, frames, labels, description: str) -> dict:
    """Top-1 agreement of the capture artifact with the Python path (edgeblood.framing without its JPEG
    step, then the run's PyTorch model); >= 99.5 % passes (PIL's uint8 rounding vs the graph's)."""
    import time

    import numpy as np
    import torch

    from edgeblood.parity import MISMATCH, OK, THRESHOLDS
    from edgeblood.preprocess import wrap_for_deployment

    t0 = time.perf_counter()
    framing = replace_jpeg(run.framing)
    framed = np.stack([framing.apply(f, run.in_size) for f in frames]).transpose(0, 3, 1, 2).astype(np.float32)
    module = wrap_for_deployment(run.model, run.meta, with_label=False)
    with torch.inference_mode():
        reference = torch.cat([module(torch.from_numpy(framed[i : i + 256])) for i in range(0, len(framed), 256)]).numpy()
    runtime, predict = capture_predictor(artifact)
    probs = np.stack([predict(f) for f in frames])
    agreement = float((probs.argmax(1) == reference.argmax(1)).mean())
    need = THRESHOLDS["capture"]["min_agreement"]
    result = {
        "status": OK if agreement >= need else MISMATCH, "n_images": len(frames), "split": "captures", "data": description,
        "runtime": runtime, "device": "cpu", "agreement": agreement, "max_abs_diff": float(np.abs(probs - reference).max()),
        "artifact_accuracy": float((probs.argmax(1) == labels).mean()), "reference_accuracy": float((reference.argmax(1) == labels).mean()),
        "reference": f"Python path: {framing.describe()}, then PyTorch fp32", "thresholds": dict(THRESHOLDS["capture"]),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if result["status"] == MISMATCH:
        result["reason"] = f"agreement {agreement * 100:.2f} % < {need * 100:.1f} %"
    return result

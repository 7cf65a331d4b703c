"""The capture variant of an ONNX model: a raw camera frame of any size in, the framing inside the graph.

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

What cannot be in a graph: the JPEG round trip of the official 28 px file. The capture variant
feeds the model clean pixels (recorded in its metadata as ``capture_framing``); models trained with
edgeblood's real-pixel augmentation hold on both (see the README's real-image table).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgeblood.errors import EdgebloodError
from edgeblood.framing import Framing

CAPTURE_INPUT = "capture"
MIN_OPSET = 18  # Resize's antialias attribute


def build_capture_model(model_onnx: str | Path, framing: Framing, size: int, out: str | Path, metadata: dict[str, str]) -> dict:
    """Write ``out``: ``model_onnx`` with ``framing`` (without its JPEG step) in front; returns manifest details."""
    import onnx
    from onnx import TensorProto, helper

    proto = onnx.load(str(model_onnx))
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise EdgebloodError(f"{model_onnx} uses ONNX opset {opset}; the capture variant needs >= {MIN_OPSET} (antialiased Resize): "
                             f"re-export with --opset {MIN_OPSET} or newer")
    graph = proto.graph
    (image_input,) = [i for i in graph.input if i.name not in {init.name for init in graph.initializer}]
    framed = "framed_image"
    for node in graph.node:  # the model now reads the framed tensor instead of its input
        node.input[:] = [framed if name == image_input.name else name for name in node.input]

    def const(name: str, values, dtype=TensorProto.INT64, dims=None):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name + "_value", dtype, dims if dims is not None else [len(values)], values))

    nodes = [
        helper.make_node("Cast", [CAPTURE_INPUT], ["cap_f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["cap_f"], ["cap_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Shape", ["cap_nchw"], ["cap_shape"]),
        const("hw_index", [2, 3]),
        helper.make_node("Gather", ["cap_shape", "hw_index"], ["hw"], axis=0),
        helper.make_node("Cast", ["hw"], ["hw_f"], to=TensorProto.FLOAT),
    ]
    nodes += _side_nodes(framing, const)
    nodes += [
        helper.make_node("Sub", ["hw_f", "side_f"], ["room"]),
        const("two", [2.0], TensorProto.FLOAT, []),
        helper.make_node("Div", ["room", "two"], ["half_room"]),
        helper.make_node("Round", ["half_room"], ["offset_f"]),
        helper.make_node("Cast", ["offset_f"], ["starts"], to=TensorProto.INT64),
        helper.make_node("Cast", ["side_f"], ["side_i"], to=TensorProto.INT64),
        helper.make_node("Add", ["starts", "side_i"], ["ends"]),
        helper.make_node("Slice", ["cap_nchw", "starts", "ends", "hw_index"], ["window"]),
        const("out_hw", [size, size]),
        helper.make_node("Resize", ["window", "", "", "out_hw"], ["resized"], mode="linear", antialias=1, axes=[2, 3],
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Round", ["resized"], ["rounded"]),
        const("lo", [0.0], TensorProto.FLOAT, []),
        const("hi", [255.0], TensorProto.FLOAT, []),
        helper.make_node("Clip", ["rounded", "lo", "hi"], [framed]),
    ]
    model_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + model_nodes)
    graph.input.remove(image_input)
    graph.input.insert(0, helper.make_tensor_value_info(CAPTURE_INPUT, TensorProto.UINT8, ["N", "H", "W", 3]))
    meta, details = _capture_contract(framing, metadata)
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    return details


def _side_nodes(framing: Framing, const) -> list:
    """Nodes computing ``side_f`` (float scalar broadcast over H, W): the square's side in source pixels."""
    from onnx import TensorProto, helper

    if framing.kind == "window":
        return [const("side_f", [float(framing.window_px)], TensorProto.FLOAT, [])]
    nodes = [helper.make_node("ReduceMin", ["hw_f"], ["short_side"], keepdims=0)]
    if framing.kind == "square":
        return nodes + [helper.make_node("Identity", ["short_side"], ["side_f"])]
    return nodes + [
        const("fraction", [float(framing.fraction)], TensorProto.FLOAT, []),
        helper.make_node("Mul", ["short_side", "fraction"], ["side_raw"]),
        helper.make_node("Round", ["side_raw"], ["side_rounded"]),
        const("one", [1.0], TensorProto.FLOAT, []),
        helper.make_node("Max", ["side_rounded", "one"], ["side_f"]),
    ]


def build_capture_openvino(model_xml: str | Path, framing: Framing, size: int, out_xml: str | Path, metadata: dict[str, str]) -> dict:
    """The OpenVINO capture variant: the IR's input replaced by the framing ops, resized with
    Interpolate-11 ``bilinear_pillow`` (OpenVINO's Resize-with-antialias differs from PIL: 93 % top-1
    agreement on the val originals, measured; ``bilinear_pillow``: 99.6 %)."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops
    from openvino import opset11

    from edgeblood.exporters.openvino import write_rt_info

    model = ov.Core().read_model(str(model_xml))
    (param,) = model.get_parameters()
    cap = ops.parameter([-1, -1, -1, 3], ov.Type.u8, name=CAPTURE_INPUT)
    cap.output(0).set_names({CAPTURE_INPUT})
    x = ops.transpose(ops.convert(cap, "f32"), ops.constant(np.array([0, 3, 1, 2], np.int64)))
    hw_index = ops.constant(np.array([2, 3], np.int64))
    hw = ops.convert(ops.gather(ops.shape_of(x, "i64"), hw_index, ops.constant(np.int64(0))), "f32")
    if framing.kind == "window":
        side = ops.constant(np.float32(framing.window_px))
    else:
        short = ops.reduce_min(hw, ops.constant(np.int64(0)), keep_dims=False)
        side = short if framing.kind == "square" else ops.maximum(
            ops.round(ops.multiply(short, ops.constant(np.float32(framing.fraction))), "half_to_even"), ops.constant(np.float32(1)))
    starts = ops.convert(ops.round(ops.divide(ops.subtract(hw, side), ops.constant(np.float32(2))), "half_to_even"), "i64")
    ends = ops.add(starts, ops.convert(side, "i64"))
    window = ops.slice(x, starts, ends, ops.constant(np.array([1, 1], np.int64)), hw_index)
    resized = opset11.interpolate(window, ops.constant(np.array([size, size], np.int64)), "bilinear_pillow", "sizes",
                                  axes=hw_index, coordinate_transformation_mode="half_pixel")
    framed = ops.clamp(ops.round(resized, "half_to_even"), 0.0, 255.0)
    for target in list(param.output(0).get_target_inputs()):
        target.replace_source_output(framed.output(0))
    capture_model = ov.Model(model.get_results(), [cap], "edgeblood-capture")
    meta, details = _capture_contract(framing, metadata)
    write_rt_info(capture_model, meta)
    out_xml = Path(out_xml)
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(capture_model, str(out_xml), compress_to_fp16=False)
    return details | {"resize_op": "Interpolate-11 bilinear_pillow"}


def replace_jpeg(framing: Framing) -> Framing:
    """The framing a graph can hold: the same window and resize, no JPEG round trip."""
    return dataclasses.replace(framing, jpeg_quality=None)


def _capture_contract(framing: Framing, metadata: dict[str, str]) -> tuple[dict[str, str], dict]:
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

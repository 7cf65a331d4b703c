"""The ONNX capture variant (``model-capture.onnx``): ``model.onnx`` with the framing in front of it.

Nodes, in order: Cast, Transpose to NCHW, the centred square (``window``/``fraction``/``square``; offsets
rounded half to even like edgeblood.framing), Resize linear with ``antialias=1`` (opset 18, PIL's
triangle filter), Round and Clip to 0..255, then the model graph. What a capture variant is, and the
parts every format shares (input, contract, parity on captures), are in ``edgeblood.exporters.capture``.
"""

from __future__ import annotations

from pathlib import Path

from edgeblood.errors import EdgebloodError
from edgeblood.exporters.capture import CAPTURE_INPUT, capture_contract
from edgeblood.exporters.onnx.metadata import write_metadata
from edgeblood.framing import Framing

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
    meta, details = capture_contract(framing, metadata)
    write_metadata(proto, meta)
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

"""ONNX Runtime post-training quantization and fp16 conversion of an exported ``model.onnx``.

* static int8: QDQ format (QuantizeLinear/DequantizeLinear pairs that ORT fuses into integer
  kernels and that other runtimes - TensorRT, OpenVINO, Core ML tools - can read), per-channel
  symmetric int8 weights, uint8 asymmetric activations (U8S8: the fast path of ORT's x86 kernels,
  exact on VNNI), calibrated with MinMax, Entropy or Percentile on a stratified train subset.
  Softmax/ArgMax stay in float: quantizing probabilities to 1/255 steps would only create ties.
  The first layer's weights use 7 bits (``first_layer_weights``) so that it cannot saturate ORT's U8S8
  kernel on x86 without VNNI; ``kernel_check`` measures the rest on the machine that quantizes.
* accuracy bound (``--max-drop PT``, measured on the val split, never test): when the int8 model
  loses more than PT points of val accuracy against the fp32 model, the layers whose quantization
  hurts most are kept in float until the drop fits. Each quantized layer is ranked by the val accuracy
  of the model with only that layer in float (one quantization per layer, from one set of activation
  ranges), then layers are returned to float in that order. The manifest lists them with that figure.
* dynamic int8: weights quantized offline, activation ranges computed per batch at run time; no
  calibration data, the comparison point for static.
* fp16: initializers and ops in float16 with float32 input/output kept (the contract stays the same).

The artifact keeps the fp32 model's metadata (``metadata_props``) with ``precision`` updated, so every
variant carries the same contract. Files are written atomically.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeblood.atomic import atomic_path
from edgeblood.compression.calibration import batches
from edgeblood.compression.methods import QuantizeJob, QuantizeMethod, Variant, accuracy_control_record, register, timed
from edgeblood.errors import EdgebloodError, import_extra
from edgeblood.exporters.onnx.metadata import read_metadata, write_metadata

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
FLOAT_ONLY_OPS = ("Softmax", "ArgMax")
CALIBRATION_BATCH = 32
INT8_CONV_CHANNEL_MULTIPLE = 4  # convs reading fewer input channels than this are zero-padded up to it


def _modules():
    return import_extra("onnx", "onnx", "onnx"), import_extra("onnxruntime.quantization", "onnxruntime", "onnx")


def quantize_static(
    fp32_path: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration: np.ndarray,
    method: str = "minmax",
    *,
    per_channel: bool = True,
    reduce_range: bool = False,
    percentile: float = 99.999,
    max_drop: float | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    say=None,
) -> dict:
    """Static int8 QDQ model from ``fp32_path`` calibrated on ``calibration`` (float32 NCHW 0-255).

    With ``max_drop`` (percentage points) and ``validation`` (float32 NCHW images, labels), layers
    return to float until the val drop fits (module docstring). Returns the graph rewrites made before
    quantizing and, with ``max_drop``, the ``accuracy_control`` record (for the manifest).
    """
    onnx, q = _modules()
    method = method.lower()
    if method not in CALIBRATION_METHODS:
        raise EdgebloodError(f"--calibration-method must be one of {', '.join(CALIBRATION_METHODS)} (got '{method}')")
    if calibration is None or len(calibration) == 0:
        raise EdgebloodError("no calibration data for static int8 quantization; pass --calibration-images N with N >= 1")
    calib_method = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
                    "percentile": q.CalibrationMethod.Percentile}[method]
    src = onnx.load(str(fp32_path))
    input_name = src.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="edgeblood-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # shape inference + graph optimisation (BN folding etc.) before calibration, as ORT recommends
        q.quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared))
        padded = pad_conv_input_channels(graph)
        if padded:
            onnx.save(graph, str(prepared))
        exclude = [n.name for n in graph.graph.node if n.op_type in FLOAT_ONLY_OPS] + domain_only_nodes(graph.graph)
        reader = _reader(q.CalibrationDataReader, input_name, calibration)
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
        first_layer = {} if reduce_range else first_layer_weights(graph.graph, exclude)
        if first_layer:  # the axis keeps them per-channel: an override without one makes ORT use a single scale
            extra["TensorQuantOverrides"] = {weight: [{"reduce_range": True, **({"axis": axis} if per_channel else {})}]
                                             for weight, axis in first_layer.values()}
        quantized = Path(tmp) / "quantized.onnx"
        kwargs = {}
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress lines
            if method != "minmax":
                cache = _histogram_ranges(prepared, Path(tmp), calib_method, reader, percentile)
                if cache is not None:
                    reader, kwargs = None, {"calibration_cache_path": str(cache)}
                elif method == "percentile":
                    extra["CalibPercentile"] = percentile

            def make(dest: Path, float_nodes: list[str] = (), ranges: dict | None = None) -> Path:
                with contextlib.redirect_stdout(io.StringIO()):
                    q.quantize_static(
                        str(prepared), str(dest), None if ranges else reader,
                        quant_format=q.QuantFormat.QDQ, per_channel=per_channel, reduce_range=reduce_range,
                        activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                        nodes_to_exclude=exclude + list(float_nodes), calibrate_method=calib_method, extra_options=extra,
                        **(ranges if ranges is not None else kwargs),
                    )
                return dest

            make(quantized)
        details: dict = {"conv_input_channels_padded": padded}
        if max_drop is not None:
            if validation is None or len(validation[0]) == 0:
                raise EdgebloodError("--max-drop needs the val split to validate on; the dataset has no val images")
            ranges = kwargs or {"calibration_cache_path": str(_minmax_ranges(prepared, Path(tmp), reader))}
            quantized, details["accuracy_control"] = _bound_drop(make, ranges, Path(fp32_path), quantized, graph, validation,
                                                                 float(max_drop), Path(tmp), say or (lambda _m: None))
        in_float = {n["node"] for n in details.get("accuracy_control", {}).get("float_nodes", [])}
        seven_bit = sorted(set(first_layer) - in_float)
        if seven_bit:
            details["first_layer_7bit_weights"] = seven_bit
        label = f"int8-static-{method}"
        _save_with_metadata(onnx.load(str(quantized)), src, out_path, label)
    return details


def _bound_drop(make, ranges: dict, fp32: Path, first: Path, graph, validation, max_drop: float, tmp: Path, say) -> tuple[Path, dict]:
    """Return layers to float, most harmful first, until the int8 model's val drop is within ``max_drop`` points."""
    import time

    t0 = time.perf_counter()
    images, labels = validation
    fp32_acc = val_accuracy(fp32, images, labels)
    first_acc = val_accuracy(first, images, labels)
    record = accuracy_control_record(max_drop, len(labels), fp32_acc, first_acc)
    if record["met"]:
        return first, record | {"seconds": round(time.perf_counter() - t0, 1)}
    candidates = [n for n in graph.graph.node if n.op_type in _quantized_op_types() and n.op_type not in FLOAT_ONLY_OPS and n.name]
    say(f"ONNX Runtime int8 loses {100 * (fp32_acc - first_acc):.2f} pt of val accuracy (> --max-drop {max_drop:g}): "
        f"ranking {len(candidates)} layers by the harm their quantization does")
    alone = {}
    for k, node in enumerate(candidates):
        alone[node.name] = val_accuracy(make(tmp / f"alone-{k}.onnx", [node.name], ranges), images, labels)
    # most harmful first; among equals (a fault every layer shares, e.g. ranges far too wide) the earlier
    # layer first, since its error reaches everything after it
    position = {n.name: i for i, n in enumerate(candidates)}
    order = sorted(candidates, key=lambda n: (-alone[n.name], position[n.name]))
    trials = [(first_acc, 0, first)]  # (val accuracy, layers in float, file)
    for k in range(1, len(order) + 1):
        trial = make(tmp / f"float-{k}.onnx", [n.name for n in order[:k]], ranges)
        trials.append((val_accuracy(trial, images, labels), k, trial))
        if 100 * (fp32_acc - trials[-1][0]) <= max_drop:
            break
    met = 100 * (fp32_acc - trials[-1][0]) <= max_drop
    acc, k, path = trials[-1] if met else max(trials, key=lambda t: (t[0], -t[1]))  # else: the best trial, fewest float layers
    kept, returned = list(order[:k]), []
    if met and k > 1:
        kept, returned, acc, path = _return_unneeded(make, ranges, kept, acc, path, fp32_acc, validation, max_drop, tmp)
    record["float_nodes"] = [{"node": n.name, "op": n.op_type, "val_accuracy_with_only_this_float": alone[n.name],
                              "why": f"val accuracy {100 * alone[n.name]:.2f} % with only this layer in float vs {100 * first_acc:.2f} % all int8"}
                             for n in kept]
    record["first_pass_float"] = k
    if returned:
        record["returned_to_int8"] = [n.name for n in returned]
    return path, record | {"fell_back": True, "val_accuracy_int8": acc, "drop_pt": round(100 * (fp32_acc - acc), 3), "met": met,
                           "candidates": len(candidates), "seconds": round(time.perf_counter() - t0, 1)}


def _return_unneeded(make, ranges: dict, kept: list, acc: float, path: Path, fp32_acc: float, validation, max_drop: float,
                     tmp: Path) -> tuple[list, list, float, Path]:
    """Second pass: give each float layer back to int8, least harmful first, where the drop stays within the bound.

    The first pass keeps a prefix of a one-at-a-time ranking, and layer effects do not add up: on se-cnn 64 px it
    kept 9 layers in float (the file 80 % of fp32) to fix a 0.82 pt drop that fewer of them fix.
    """
    images, labels = validation
    returned = []
    for i, node in enumerate(reversed(list(kept))):
        trial_nodes = [n.name for n in kept if n is not node]
        trial = make(tmp / f"return-{i}.onnx", trial_nodes, ranges)
        trial_acc = val_accuracy(trial, images, labels)
        if 100 * (fp32_acc - trial_acc) <= max_drop:
            kept = [n for n in kept if n is not node]
            returned.append(node)
            acc, path = trial_acc, trial
    return kept, returned, acc, path


def _quantized_op_types() -> set[str]:
    """The op types quantize_static puts QDQ pairs around (its own default: the QLinear and QDQ registries)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return set(QDQRegistry) | set(QLinearOpsRegistry)


def val_accuracy(model_path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of an ONNX model with its runtime adapter (the one compress and bench measure with), on the CPU."""
    from edgeblood.runtimes import runtime_for_artifact

    probs = runtime_for_artifact(model_path).load(model_path, device="cpu").predict(images)
    return float((probs.argmax(1) == labels).mean())


def _minmax_ranges(model: Path, tmp: Path, reader) -> Path:
    """MinMax activation ranges computed once and saved as a calibration cache (the search re-quantizes many times)."""
    from onnxruntime.quantization import calibrate

    reader.rewind()
    calibrator = calibrate.create_calibrator(model, None, augmented_model_path=str(tmp / "augmented-minmax.onnx"),
                                             calibrate_method=calibrate.CalibrationMethod.MinMax, extra_options={"symmetric": False})
    with contextlib.redirect_stdout(io.StringIO()):
        calibrator.collect_data(reader)
    cache = tmp / "calibration-minmax.json"
    calibrate.save_tensors_data(calibrator.compute_data(), cache)
    return cache


def pad_conv_input_channels(model, multiple: int = INT8_CONV_CHANNEL_MULTIPLE) -> list[dict]:
    """Zero-pad the input channels of convolutions that read fewer than ``multiple`` (the RGB stem) in place.

    Why: in ONNX Runtime's x86 int8 kernels (U8S8) the 3-channel stem conv of se-cnn ran at
    15 GMAC/s against 130-145 for the other convs, 16 % of the int8 model's time. A Pad op adds zero
    channels to its input and the weights get matching zero channels, so the float function is
    unchanged (exact: every added product is 0 x 0). Measured in an interleaved A/B on se-cnn 28 px
    (onnxruntime 1.31, 1 thread, batch 1): the int8 model is 1.09x faster with 4 channels (twice),
    1.05x with 8, 0.98x with 16. The fp32 model gains nothing (0.98x), so only the int8 path pads.
    Grouped convs, and weights that are not initializers or can be fed as graph inputs, are left
    alone. Returns what was padded.
    """
    from onnx import helper, numpy_helper

    from edgeblood.exporters.onnx.export import names_read

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    # a weight that is also a graph input can be fed at run time, so it is not a constant to widen
    overridable = {i.name for i in graph.input}
    taken = set(weights) | {n.name for n in graph.node} | {o for n in graph.node for o in n.output} | overridable

    def unique(name: str) -> str:
        candidate, k = name, 1
        while candidate in taken:
            candidate, k = f"{name}_{k}", k + 1
        taken.add(candidate)
        return candidate

    padded, replaced = [], set()
    for node in list(graph.node):
        if node.op_type != "Conv" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        if node.input[1] not in weights or node.input[1] in overridable:
            continue
        group = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "group"), 1)
        weight = numpy_helper.to_array(weights[node.input[1]])
        if group != 1 or weight.ndim < 3 or weight.shape[1] >= multiple:
            continue
        channels, extra = weight.shape[1], multiple - weight.shape[1]
        stem = node.name or node.output[0]
        wide = np.concatenate([weight, np.zeros((weight.shape[0], extra, *weight.shape[2:]), weight.dtype)], axis=1)
        pads = np.zeros(2 * weight.ndim, np.int64)
        pads[weight.ndim + 1] = extra  # end of the channel axis
        wide_name, pads_name, out_name = unique(f"{stem}_weight_padded_channels"), unique(f"{stem}_channel_pads"), unique(f"{stem}_input_padded_channels")
        graph.initializer.extend([numpy_helper.from_array(wide, wide_name), numpy_helper.from_array(pads, pads_name)])
        pad = helper.make_node("Pad", [node.input[0], pads_name], [out_name], name=unique(f"{stem}_pad_channels"), mode="constant")
        replaced.add(node.input[1])
        node.input[0], node.input[1] = out_name, wide_name
        graph.node.insert(list(graph.node).index(node), pad)
        padded.append({"node": stem, "from": int(channels), "to": multiple})
    if padded:
        # drop the replaced weights nothing reads any more (subgraphs and graph outputs count as reads);
        # value_info still holds their old shapes
        read = names_read(graph)
        for init in [i for i in graph.initializer if i.name in replaced and i.name not in read]:
            graph.initializer.remove(init)
        del graph.value_info[:]
    return padded


def _histogram_ranges(model: Path, tmp: Path, calib_method, reader, percentile: float) -> Path | None:
    """Entropy/Percentile activation ranges computed with explicit histogram settings, as a calibration cache.

    ``quantize_static`` passes no histogram options to its calibrator, and ORT's Entropy default
    (128 histogram bins searched for 128 quantized bins) leaves one candidate threshold - the full
    range - so "entropy" would silently equal MinMax (measured: identical scales). We calibrate here
    with 2048 histogram bins and 128 quantized bins (TensorRT's entropy calibration setting), clamp
    each range to the values observed, and hand the ranges to ``quantize_static`` through its
    calibration cache. (Measured on se-cnn 28 px: entropy clips long activation tails and loses
    ~0.9 pt where MinMax and Percentile lose nothing; it stays selectable, not the default.)
    Returns None on onnxruntime versions without calibration caches (their defaults then apply).
    """
    from onnxruntime.quantization import calibrate

    if not hasattr(calibrate, "save_tensors_data"):
        return None
    options = {"num_bins": 2048, "symmetric": False}
    if calib_method == calibrate.CalibrationMethod.Entropy:
        options["num_quantized_bins"] = 128
    else:
        options["percentile"] = percentile
    calibrator = calibrate.create_calibrator(model, None, augmented_model_path=str(tmp / "augmented.onnx"),
                                             calibrate_method=calib_method, extra_options=options)
    calibrator.collect_data(reader)
    ranges = calibrator.compute_data()
    # ORT's histograms are symmetric about zero, so the thresholds come back as [-t, t]; for tensors
    # that are never negative (everything after a ReLU) that would waste half of the uint8 levels.
    # Clamp each range to what was observed.
    observed = calibrator.collector.histogram_dict
    for name, data in ranges.items():
        if name in observed:
            low, high = data.range_value
            seen_min, seen_max = observed[name][2], observed[name][3]
            ranges[name] = calibrate.TensorData(lowest=np.maximum(low, seen_min).astype(np.float32),
                                                highest=np.minimum(high, seen_max).astype(np.float32),
                                                hist=data.hist, bins=data.bins)
    cache = tmp / "calibration.json"
    calibrate.save_tensors_data(ranges, cache)
    return cache


def first_layer_weights(graph, exclude: Sequence[str] = ()) -> dict[str, tuple[str, int]]:
    """The layers that read the input image: node name -> (weight initializer, ORT's per-channel axis); quantized to 7 bits.

    Why: on x86 CPUs without VNNI (AVX2, AVX-512 without VNNI), ONNX Runtime's U8S8 kernels multiply with
    VPMADDUBSW, which adds two uint8 x int8 products into a saturating int16. Full-range weights (127) on a
    bright image (uint8 activations near 255) overflow it: 2 x 255 x 127 = 64,770 > 32,767; 7-bit weights (64)
    cannot. The first layer sees dense near-full-range activations; later layers mostly small ones after ReLU.
    Measured on an AMD EPYC with AVX2 (onnxruntime 1.32, test split, fp32 96.61 / 96.73 / 98.74 %): all weights
    8-bit 92.55 % on se-cnn 28 px (-4.06 pt; the same artifact gives 96.55 % on a VNNI CPU), 94.56 % on the 49 K
    model, 97.95 % on se-cnn 64 px; the first layer in 7 bits (per channel) 96.67, 96.84, 98.51 %; every layer in
    7 bits (ORT's ``reduce_range``) 96.58, 96.61, 98.66 %. Same kernels, so the same speed (se-cnn 28 px: 1.01x
    the all-8-bit artifact, interleaved). NNCF's default ``overflow_fix="first_layer_only"`` does the same for
    OpenVINO.
    """
    def channel_axis(node) -> int:  # the axes ORT's own per-channel quantizers use (operators/conv.py, gemm.py, matmul.py)
        if node.op_type == "Gemm":
            return 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1
        return {"Conv": 0, "ConvTranspose": 1}.get(node.op_type, 1)

    layer_ops = {"Conv", "Gemm", "MatMul", "ConvTranspose"}
    shape_only = {"Shape", "Size"}  # what follows them reads the image's shape, not its pixels
    weights = {init.name for init in graph.initializer}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    found, seen, stack = {}, set(), [i.name for i in graph.input if i.name not in weights]
    while stack:  # walk forward from the image, stopping at the first layer on each path
        for node in readers.get(stack.pop(), []):
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type in layer_ops:
                if node.name not in exclude and len(node.input) > 1 and node.input[1] in weights:
                    found[node.name or node.output[0]] = (node.input[1], channel_axis(node))
            elif node.op_type not in shape_only:
                stack.extend(node.output)
    return found


def domain_only_nodes(graph) -> list[str]:
    """Names of the nodes that feed only the ``domain`` output (edgeblood.domain): kept in float.

    Its distances square and sum activations; int8 there moved the flagged share of held-in val captures
    from 3.9 % to 9.7 % (static) and 16.4 % (dynamic) on se-cnn 28 px. The features it reads come from the
    int8 backbone like the probabilities do; only the arithmetic after them stays float.
    """
    from edgeblood.contract import DOMAIN_NAME

    producer = {out: node for node in graph.node for out in node.output}

    def ancestors(names) -> set[int]:
        seen, stack = set(), list(names)
        while stack:
            node = producer.get(stack.pop())
            if node is not None and id(node) not in seen:
                seen.add(id(node))
                stack.extend(node.input)
        return seen

    outputs = [o.name for o in graph.output]
    if DOMAIN_NAME not in outputs:
        return []
    shared = ancestors([o for o in outputs if o != DOMAIN_NAME])
    only = ancestors([DOMAIN_NAME]) - shared
    return [n.name for n in graph.node if id(n) in only and n.name]


def quantize_dynamic(fp32_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Dynamic int8 (weights offline, activations per batch). Conv weights must be uint8 for ORT's ConvInteger."""
    onnx, q = _modules()
    src = onnx.load(str(fp32_path))
    with tempfile.TemporaryDirectory(prefix="edgeblood-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        q.quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        # The dynamic quantizer re-runs shape inference over the exporter's value_info and trips on
        # entries it rewrote itself ("inferred shape and existing shape differ"); start it clean.
        clean = onnx.load(str(prepared))
        del clean.graph.value_info[:]
        onnx.save(clean, str(prepared))
        quantized = Path(tmp) / "quantized.onnx"
        # ORT's CPU ConvInteger kernel only takes uint8 weights; int8 weights fail at load time.
        q.quantize_dynamic(str(prepared), str(quantized), weight_type=q.QuantType.QUInt8, per_channel=False,
                           nodes_to_exclude=domain_only_nodes(clean.graph))
        return _save_with_metadata(onnx.load(str(quantized)), src, out_path, "int8-dynamic")


def convert_fp16(fp32_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """float16 weights and compute, float32 ``image`` input and ``probabilities`` output (contract unchanged)."""
    onnx, _ = _modules()
    from onnxruntime.transformers.float16 import convert_float_to_float16

    src = onnx.load(str(fp32_path))
    from onnxruntime.transformers.onnx_model import OnnxModel

    half = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True, op_block_list=list(FLOAT_ONLY_OPS))
    sorted_model = OnnxModel(half)
    sorted_model.topological_sort()  # the converter appends its input Casts at the end of the node list
    half = sorted_model.model
    return _save_with_metadata(half, src, out_path, "fp16")


def _save_with_metadata(model, source, out_path: str | os.PathLike, precision: str) -> Path:
    import onnx

    write_metadata(model, {**read_metadata(source), "precision": precision})
    model.doc_string = source.doc_string
    model.producer_name = source.producer_name or model.producer_name
    onnx.checker.check_model(model)
    out_path = Path(out_path)
    with atomic_path(out_path, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))
    return out_path


def _reader(base: type, input_name: str, images: np.ndarray, batch_size: int = CALIBRATION_BATCH):
    """An onnxruntime ``CalibrationDataReader`` over an in-memory array (rewindable)."""

    class Reader(base):
        def __init__(self):
            self.images = np.asarray(images, dtype=np.float32)
            self.rewind()

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {input_name: batch}

        def rewind(self) -> None:
            self._it = iter(batches(self.images, batch_size))

    return Reader()


# ---------------------------------------------------------------------------------- the methods

def _static_variants(options) -> list[Variant]:
    first = options.calibration_methods[0]
    return [Variant(None, f"int8 static ({m})", "onnx", "int8", "model-int8.onnx" if m == first else f"model-int8-{m}.onnx",
                    tag=f"static QDQ {m}", params={"calibration_method": m}) for m in options.calibration_methods]


def _make_static(job: QuantizeJob) -> dict:
    from edgeblood.exporters.onnx.kernel_check import kernel_agreement

    method = job.params["calibration_method"]
    bound = job.options.max_drop
    details = timed(lambda *a: quantize_static(*a, max_drop=bound, validation=job.validation if bound is not None else None),
                    job.source, job.dest, job.calibration, method, details={
        "method": "onnxruntime quantize_static, QDQ, per-channel symmetric int8 weights (7-bit where they read the image), asymmetric uint8 activations",
        "calibration": {**job.calibration_info, "method": method}, "float_ops": list(FLOAT_ONLY_OPS)})
    return details | {"kernel_check": {**kernel_agreement(job.dest, job.calibration), "split": "train (the calibration images)"}}


_ORT = (("onnx", "onnx", "onnx"), ("onnxruntime", "onnxruntime", "onnx"))
register(QuantizeMethod(
    name="onnxruntime-static", target="onnx", quantize="int8", variants=_static_variants, make=_make_static, libraries=_ORT,
    bounds_accuracy_drop=True,
    description="ONNX Runtime static int8 (QDQ), one variant per --calibration-method"))
register(QuantizeMethod(
    name="onnxruntime-dynamic", target="onnx", quantize="int8", libraries=_ORT,
    variants=lambda o: [Variant(None, "int8 dynamic", "onnx", "int8-dynamic", "model-int8-dynamic.onnx", tag="dynamic")] if o.dynamic else [],
    make=lambda job: timed(quantize_dynamic, job.source, job.dest,
                           details={"method": "onnxruntime quantize_dynamic", "weights": "uint8 (ConvInteger)"}),
    description="ONNX Runtime dynamic int8 (the comparison point; --no-dynamic skips it)"))
register(QuantizeMethod(
    name="onnxruntime-fp16", target="onnx", quantize="fp16", libraries=_ORT,
    variants=lambda o: [Variant(None, "fp16", "onnx", "fp16", "model-fp16.onnx")],
    make=lambda job: timed(convert_fp16, job.source, job.dest, details={"method": "onnxruntime.transformers.float16, keep_io_types"}),
    description="fp16 initializers and ops, float32 input/output"))

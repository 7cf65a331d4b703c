"""ONNX export: the deployment-wrapped model, checked, with the contract in ``metadata_props``.

Exporter choice (measured with torch 2.13, onnx 1.23, onnxruntime 1.31, openvino 2026.4): the
torch.export-based exporter (``dynamo=True``, the default since torch 2.9; needs onnxscript) and the
legacy TorchScript exporter give the same 42-node graph (BatchNorm folded into Conv) and identical
outputs (max diff 1e-7). We use the torch.export exporter because the TorchScript one is deprecated;
it costs ~1.5 s more per export. It stores a stack trace with local file paths on every node,
which we strip (it doubled the file size and leaks the build machine's paths). If onnxscript is
missing or torch.export fails, the legacy exporter is used and the manifest says so.

Opset 21: the newest opset that onnxruntime >= 1.18 (edgeblood's minimum) and OpenVINO read, and
the one ORT's quantizer uses for QDQ int8/int4.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeblood.contract import DOMAIN_NAME, INPUT_NAME, LABEL_NAME, PROB_NAME, nchw_input
from edgeblood.errors import EdgebloodError
from edgeblood.exporters.onnx.metadata import write_metadata
from edgeblood.targets import CaptureVariant, ExportJob, ExportOptions, Target, register

if TYPE_CHECKING:
    import torch

DEFAULT_OPSET = 21
LEGACY_MAX_OPSET = 20  # the TorchScript exporter's newest fully supported opset


def require_onnx() -> None:
    TARGET.require()  # the target record names the libraries (onnx, onnxruntime) and the extra


def export_onnx(
    model: torch.nn.Module,
    metadata: dict[str, str],
    out_path: str | Path,
    *,
    in_size: int,
    opset: int = DEFAULT_OPSET,
    simplify: bool | str = "auto",
) -> dict:
    """Export ``model`` (a RawPixelClassifier returning (probabilities, label)) to ``out_path``.

    ``simplify``: "auto" runs onnxslim and keeps its graph only when it is smaller or faster
    (measured); True keeps it regardless; False skips it. Returns details for the manifest.
    """
    require_onnx()
    import onnx
    import torch

    out_path = Path(out_path)
    example = torch.full((2, 3, in_size, in_size), 128.0)
    t0 = time.perf_counter()
    proto, exporter = _torch_to_onnx(model.eval(), example, opset)
    _strip_debug_info(proto)
    details_pools = _spatial_means_to_global_pools(proto)
    write_metadata(proto, metadata)
    proto.doc_string = metadata.get("description", "")
    proto.graph.doc_string = (f"edgeblood {metadata.get('model_name', '')}: {INPUT_NAME} float32 [N,3,{in_size},{in_size}] RGB 0-255 "
                              f"-> {PROB_NAME}, {LABEL_NAME}")
    proto.model_version = 1
    details: dict = {"exporter": exporter, "opset": _opset_of(proto), "global_pools_rewritten": details_pools}
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise EdgebloodError(f"the exported ONNX graph fails onnx.checker ({str(exc).splitlines()[0][:200]}); please report this model config") from None

    if simplify:
        proto, details["simplification"] = _maybe_simplify(proto, in_size, force=simplify is True)
    onnx.save_model(proto, str(out_path))
    details["seconds"] = round(time.perf_counter() - t0, 3)
    return details


def _torch_to_onnx(model: torch.nn.Module, example: torch.Tensor, opset: int):
    """(ModelProto, exporter description); torch.export exporter first, TorchScript as fallback."""
    import onnx
    import torch

    outputs = [PROB_NAME, LABEL_NAME] + ([DOMAIN_NAME] if getattr(model, "domain", None) is not None else [])
    names = dict(input_names=[INPUT_NAME], output_names=outputs)
    errors = []
    if importlib.util.find_spec("onnxscript") is not None:
        try:
            with _quiet():
                program = torch.onnx.export(
                    model, (example,), None, dynamo=True, opset_version=opset, verbose=False,
                    dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch", min=1, max=65536)}}, **names,
                )
            return program.model_proto, f"torch.onnx (torch.export, torch {torch.__version__})"
        except Exception as exc:  # fall through to the TorchScript exporter
            errors.append(f"torch.export: {type(exc).__name__}")
    buf = io.BytesIO()
    axes = {n: {0: "batch"} for n in (INPUT_NAME, *outputs)}
    try:
        with _quiet():
            torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=min(opset, LEGACY_MAX_OPSET), dynamic_axes=axes, **names)
    except Exception as exc:
        errors.append(f"TorchScript: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
        raise EdgebloodError(f"ONNX export failed ({'; '.join(errors)}); this model may use an operator ONNX cannot express") from None
    note = " (torch.export failed)" if errors else " (onnxscript not installed)"
    return onnx.load_model_from_string(buf.getvalue()), f"torch.onnx legacy TorchScript{note}"


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress prints, deprecation warnings and logger chatter."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _strip_debug_info(proto) -> None:
    """Drop per-node stack traces/namespaces (local paths, half the file) the torch.export exporter adds."""
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for vi in list(proto.graph.value_info) + list(proto.graph.input) + list(proto.graph.output):
        del vi.metadata_props[:]
    del proto.graph.metadata_props[:]
    del proto.metadata_props[:]


def _spatial_means_to_global_pools(proto) -> int:
    """Rewrite ReduceMean over H and W of a 4-D tensor (keepdims) as GlobalAveragePool; returns how many.

    torch.export lowers both ``x.mean((2, 3), keepdim=True)`` and ``AdaptiveAvgPool2d(1)`` to
    ReduceMean. The two ops compute the same thing, but ONNX Runtime's int8 path has a quantized
    GlobalAveragePool and no quantized ReduceMean, so each squeeze-excitation block otherwise runs in
    float between a DequantizeLinear/QuantizeLinear pair (se-cnn 28 px: 8 fewer nodes in int8).
    """
    import onnx
    from onnx import helper, numpy_helper

    ranks = {}
    inferred = onnx.shape_inference.infer_shapes(proto)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if vi.type.tensor_type.HasField("shape"):
            ranks[vi.name] = len(vi.type.tensor_type.shape.dim)
    consts = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    rewritten, axes_inputs = 0, set()
    for i, node in enumerate(list(proto.graph.node)):
        if node.op_type != "ReduceMean" or node.domain not in ("", "ai.onnx") or ranks.get(node.input[0]) != 4:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1] in consts:
            axes = consts[node.input[1]].tolist()
        if attrs.get("keepdims", 1) != 1 or axes is None or sorted(a % 4 for a in axes) != [2, 3]:
            continue
        pool = helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=f"{node.name or 'reduce_mean'}_as_gap")
        proto.graph.node.remove(node)
        proto.graph.node.insert(i, pool)
        axes_inputs.update(node.input[1:])
        rewritten += 1
    orphans = axes_inputs - names_read(proto.graph)
    for node in [n for n in proto.graph.node if n.op_type == "Constant" and n.output[0] in orphans]:
        proto.graph.node.remove(node)
    for init in [t for t in proto.graph.initializer if t.name in orphans]:
        proto.graph.initializer.remove(init)
    return rewritten


def names_read(graph) -> set[str]:
    """Every tensor name a graph reads: node inputs (subgraphs of If/Loop/Scan included) and its outputs/inputs."""
    from onnx import AttributeProto

    names = {o.name for o in graph.output} | {i.name for i in graph.input}
    for node in graph.node:
        names.update(node.input)
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                names |= names_read(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for g in attr.graphs:
                    names |= names_read(g)
    return names


def _opset_of(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _maybe_simplify(proto, in_size: int, force: bool):
    """Run onnxslim; keep the result only if it has fewer nodes, is >= 1 % smaller or >= 5 % faster
    (batch-1 onnxruntime latency), and gives the same outputs."""
    if importlib.util.find_spec("onnxslim") is None:
        return proto, {"applied": False, "reason": "onnxslim not installed (pip install \"edgeblood[onnx]\")"}
    import onnxslim

    try:
        with _quiet():
            slim = onnxslim.slim(_copy(proto))
    except Exception as exc:
        return proto, {"applied": False, "reason": f"onnxslim failed: {type(exc).__name__}"}
    before, after = _measure(proto, in_size), _measure(slim, in_size)
    p_before, p_after = before.pop("probs"), after.pop("probs")
    same = np.array_equal(np.argmax(p_before, 1), np.argmax(p_after, 1))
    diff = float(np.abs(p_before - p_after).max())
    helps = after["bytes"] < before["bytes"] * 0.99 or after["nodes"] < before["nodes"] or after["latency_ms"] < before["latency_ms"] * 0.95
    keep = (force or helps) and same and diff < 1e-5
    info = {"applied": bool(keep), "before": before, "after": after, "max_abs_diff": diff}
    if not keep:
        info["reason"] = "no gain in size, nodes or latency" if same and diff < 1e-5 else "changed the outputs"
    return (slim if keep else proto), info


def _copy(proto):
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


def _session(proto):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])


def _probe(in_size: int, n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (n, 3, in_size, in_size)).astype(np.float32)


def _measure(proto, in_size: int, rounds: int = 5, repeats: int = 40) -> dict:
    """Size, node count, batch-1 latency (onnxruntime, CPU, 1 thread; median of ``rounds`` medians) and probe outputs."""
    sess = _session(proto)
    x1 = _probe(in_size, 1)
    for _ in range(10):
        sess.run([PROB_NAME], {INPUT_NAME: x1})
    medians = []
    for _ in range(rounds):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            sess.run([PROB_NAME], {INPUT_NAME: x1})
            times.append(time.perf_counter() - t0)
        medians.append(np.median(times))
    return {
        "bytes": proto.ByteSize(),
        "nodes": len(proto.graph.node),
        "latency_ms": round(float(np.median(medians)) * 1e3, 4),
        "probs": sess.run([PROB_NAME], {INPUT_NAME: _probe(in_size)})[0],
    }


# ----------------------------------------------------------------------------------- the target

def _export_target(job: ExportJob) -> dict:
    from edgeblood.preprocess import wrap_run

    run = job.run
    return export_onnx(wrap_run(run), job.metadata, job.out, in_size=run.in_size,
                       opset=job.options.opset or DEFAULT_OPSET, simplify=job.options.simplify)


def check_opset(options: ExportOptions) -> None:
    """torch's exporter writes opset >= 18, and the capture variant needs 18 (Resize with antialias)."""
    from edgeblood.exporters.onnx.capture import MIN_OPSET

    if options.opset is not None and not MIN_OPSET <= options.opset <= DEFAULT_OPSET:
        raise EdgebloodError(f"--opset must be between {MIN_OPSET} and {DEFAULT_OPSET} (got {options.opset}): torch's ONNX exporter "
                             f"writes opset {MIN_OPSET} or newer and the capture variant needs {MIN_OPSET} (Resize with antialias); "
                             f"{DEFAULT_OPSET} is the newest that ONNX Runtime >= 1.18 and OpenVINO read")


def _build_capture(job: ExportJob, fp32_artifact: Path) -> dict:
    from edgeblood.exporters.onnx.capture import build_capture_model

    return build_capture_model(fp32_artifact, job.run.framing, job.run.in_size, job.out, job.metadata)


TARGET = register(Target(
    name="onnx", title="ONNX", runtime="onnxruntime", extra="onnx", libraries=("onnx", "onnxruntime"),
    artifacts={"fp32": "model.onnx"}, outputs=(PROB_NAME, LABEL_NAME), export=_export_target, input_contract=nchw_input,
    order=10, check_options=check_opset, capture=CaptureVariant("model-capture.onnx", _build_capture),
    description="ONNX (opset 21) for ONNX Runtime on CPU/CUDA/CoreML/DirectML; int8/fp16 from `edgeblood compress`",
))

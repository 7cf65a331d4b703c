"""OpenVINO IR export (model.xml + model.bin), fp32 or fp16 weights, the contract in ``rt_info``.

Converted from the ONNX export (``openvino.convert_model``) so that every target starts from the
same checked graph and keeps its tensor names (``image`` -> ``probabilities``, ``label``) and the
dynamic batch. fp16 stores weights as fp16 (``compress_to_fp16``: half the .bin); the CPU plugin
decompresses them and computes in fp32, GPU/NPU compute in fp16.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from edgeblood.contract import LABEL_NAME, PROB_NAME, nchw_input
from edgeblood.errors import EdgebloodError, missing_extra
from edgeblood.exporters.openvino.metadata import write_rt_info
from edgeblood.targets import CaptureVariant, ExportJob, Target, register


def require_openvino() -> None:
    if importlib.util.find_spec("openvino") is None:
        raise missing_extra("openvino", "openvino")


def export_openvino(onnx_path: str | Path, metadata: dict[str, str], out_xml: str | Path, *, precision: str = "fp32") -> dict:
    """Convert ``onnx_path`` to ``out_xml`` (+ .bin beside it). Returns details for the manifest."""
    require_openvino()
    import openvino as ov

    if precision not in ("fp32", "fp16"):
        raise EdgebloodError(f"OpenVINO export supports fp32 and fp16, not {precision}; int8 comes from `edgeblood compress --quantize int8 --target openvino`")
    out_xml = Path(out_xml)
    t0 = time.perf_counter()
    model = ov.convert_model(str(onnx_path))
    model.set_friendly_name(f"edgeblood-{metadata.get('model_name', 'model')}")
    write_rt_info(model, {**metadata, "precision": precision, "target": "openvino"})
    ov.save_model(model, str(out_xml), compress_to_fp16=precision == "fp16")
    return {"converter": f"openvino.convert_model (ONNX frontend, OpenVINO {ov.get_version().split('-')[0]})", "seconds": round(time.perf_counter() - t0, 3)}


def ir_files(xml: str | Path) -> list[Path]:
    """The files one IR consists of (.xml and its .bin)."""
    xml = Path(xml)
    return [xml, xml.with_suffix(".bin")]


# ----------------------------------------------------------------------------------- the target

def _export_target(job: ExportJob) -> dict:
    details = export_openvino(job.sources["onnx"], job.metadata, job.out, precision=job.precision)
    details["source"] = "the ONNX export of this run (same graph as model.onnx)"
    return details


def _build_capture(job: ExportJob, fp32_artifact: Path) -> dict:
    from edgeblood.exporters.openvino.capture import build_capture_openvino

    return build_capture_openvino(fp32_artifact, job.run.framing, job.run.in_size, job.out, job.metadata)


def _check_options(options) -> None:
    from edgeblood.exporters.onnx.export import check_opset  # the IR is converted from the ONNX export

    check_opset(options)


TARGET = register(Target(
    name="openvino", title="OpenVINO IR", runtime="openvino", extra="openvino", libraries=("onnx", "onnxruntime", "openvino"),
    artifacts={"fp32": "openvino/model.xml", "fp16": "openvino/model-fp16.xml"}, outputs=(PROB_NAME, LABEL_NAME),
    export=_export_target, input_contract=nchw_input, order=20, source="onnx", check_options=_check_options,
    capture=CaptureVariant("openvino/model-capture.xml", _build_capture),
    description="OpenVINO IR (fp32, fp16 weights) for Intel CPUs, GPUs and NPUs; int8 with NNCF from `edgeblood compress`",
))

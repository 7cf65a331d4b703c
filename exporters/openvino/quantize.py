"""OpenVINO int8 with NNCF post-training quantization (fp16 IRs come from ``edgeblood export``).

``nncf.quantize(model, nncf.Dataset(...))`` inserts FakeQuantize ops calibrated on the stratified
train subset; OpenVINO's CPU plugin then runs the convolutions in int8 (VNNI/AMX when present).
NNCF's full BiasCorrection runs instead of its default FastBiasCorrection: the fast variant corrects
each layer's bias from that layer alone, and on the global-average-pool models the errors it leaves
compound through the squeeze-excitation gates. Measured with `edgeblood compress`, test split, 28 px,
change vs fp32: se-cnn-compact-tiny -2.28 pt with fast vs -0.26 pt with full; se-cnn-compact -0.67
vs +0.00; se-cnn -0.12 vs +0.00. Full correction adds a few seconds on these models and changes only
biases, never the int8 graph's speed.
With ``max_drop`` (percentage points of val accuracy; compress's default 0.3) the plain int8 IR is
checked on the val split first; only when it loses more than that does the fallback run:
``nncf.quantize_with_accuracy_control`` reverts the most harmful quantized layers to float until the
val accuracy is within the drop - validation on val, so test stays unseen. The IR keeps the fp32 IR's
``rt_info['edgeblood']`` contract, with ``precision`` updated.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeblood.compression.methods import QuantizeJob, QuantizeMethod, Variant, accuracy_control_record, register
from edgeblood.errors import EdgebloodError, import_extra
from edgeblood.exporters.openvino.metadata import RT_INFO_SECTION, write_rt_info

PRESETS = ("performance", "mixed")


@dataclass
class OpenVinoQuantInfo:
    method: str
    preset: str
    subset_size: int
    max_drop_pt: float | None = None
    bias_correction: str = "full"
    notes: list[str] = field(default_factory=list)
    accuracy_control: dict | None = None


def _modules():
    return import_extra("openvino", "openvino", "openvino"), import_extra("nncf", "nncf", "openvino")


def quantize(
    fp32_xml: str | os.PathLike,
    out_xml: str | os.PathLike,
    calibration: np.ndarray,
    *,
    preset: str = "performance",
    max_drop: float | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Path, OpenVinoQuantInfo]:
    """int8 IR from ``fp32_xml``; ``calibration`` and ``validation`` images are float32 NCHW 0-255."""
    ov, nncf = _modules()
    if calibration is None or len(calibration) == 0:
        raise EdgebloodError("no calibration data for OpenVINO int8 quantization; pass --calibration-images N with N >= 1")
    if preset not in PRESETS:
        raise EdgebloodError(f"--preset must be one of {', '.join(PRESETS)} (got '{preset}')")
    model = ov.Core().read_model(str(fp32_xml))
    calib = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    domain_ops = domain_only_ops(model)
    ignored = dict(ignored_scope=nncf.IgnoredScope(names=domain_ops, validate=False)) if domain_ops else {}
    kwargs = dict(preset=getattr(nncf.QuantizationPreset, preset.upper()), subset_size=len(calibration),
                  fast_bias_correction=False, **ignored)
    info = OpenVinoQuantInfo(method="nncf.quantize", preset=preset, subset_size=len(calibration))
    with _quiet_nncf(nncf):
        quantized = nncf.quantize(model, calib, **kwargs)
        fell_back = False
        if max_drop is not None:
            if not 0 < max_drop <= 100:
                raise EdgebloodError(f"--max-drop is in percentage points of val accuracy and must be in (0, 100] (got {max_drop})")
            if validation is None or len(validation[0]) == 0:
                raise EdgebloodError("--max-drop needs the val split to validate on; the dataset has no val images")
            images, labels = validation
            fp32_acc, first_acc = _val_accuracy(model, images, labels), _val_accuracy(quantized, images, labels)
            record = accuracy_control_record(max_drop, len(labels), fp32_acc, first_acc)
            if not record["met"]:
                all_layers, int8_layers = _count_fake_quantize(quantized), _int8_layers(quantized)
                val = nncf.Dataset([(images[i : i + 1], int(labels[i])) for i in range(len(labels))])
                quantized = nncf.quantize_with_accuracy_control(
                    model, calib, val, _validation_fn, max_drop=max_drop / 100.0, drop_type=nncf.DropType.ABSOLUTE, **kwargs
                )
                final = _val_accuracy(quantized, images, labels)
                fell_back = True
                still_int8 = _int8_layers(quantized)
                reverted = {name: op for name, op in int8_layers.items() if name not in still_int8}
                record |= {"fell_back": True, "method": "nncf.quantize_with_accuracy_control reverted the most harmful layers to float",
                           "fake_quantize_ops": {"all_layers": all_layers, "after": _count_fake_quantize(quantized)},
                           "float_nodes": [{"node": name, "op": op, "why": "reverted to float by NNCF accuracy control: ranked among "
                                            "the layers whose int8 form cost the most val accuracy"} for name, op in sorted(reverted.items())],
                           "val_accuracy_int8": final, "drop_pt": round(100 * (fp32_acc - final), 3), "met": 100 * (fp32_acc - final) <= max_drop}
                info.method = "nncf.quantize, then nncf.quantize_with_accuracy_control (val split)"
            info.max_drop_pt, info.accuracy_control = float(max_drop), record
        if not fell_back:
            # NNCF keeps some layers in float on purpose (e.g. the squeeze-excitation gates, whose 1x1
            # convs act on a 1x1 map and cost nothing to run); their weights still dominate the file.
            # Weight-only int8 (per-channel, asymmetric) for those shrinks the file, not the math.
            # Not after accuracy control: the layers it reverted to float are meant to stay float.
            quantized = nncf.compress_weights(quantized, mode=nncf.CompressWeightsMode.INT8_ASYM, **ignored)
            info.notes.append("layers NNCF keeps in float (e.g. SE gates) get weight-only int8 (nncf.compress_weights)")
    _set_precision(quantized, "int8")
    return save_ir(quantized, out_xml, compress_to_fp16=False), info


def save_ir(model, out_xml: str | os.PathLike, compress_to_fp16: bool) -> Path:
    """Write .xml + .bin atomically: both into a temp folder beside the target, then moved (bin first)."""
    import openvino as ov

    out_xml = Path(out_xml)
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_xml.stem}.", dir=out_xml.parent) as tmp:
        tmp_xml = Path(tmp) / out_xml.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=compress_to_fp16)
        os.replace(tmp_xml.with_suffix(".bin"), out_xml.with_suffix(".bin"))
        os.replace(tmp_xml, out_xml)
    return out_xml


def _validation_fn(compiled_model, items) -> tuple[float, list[float]]:
    """NNCF's metric: val accuracy, plus per-image correctness (lets it rank layers by harm)."""
    from edgeblood.exporters.openvino.runtime import probabilities_port

    output = probabilities_port(compiled_model)
    hits = []
    for image, label in items:
        probs = compiled_model(image)[output]
        hits.append(float(int(np.argmax(probs, axis=1)[0]) == int(label)))
    return (float(np.mean(hits)) if hits else 0.0), hits


def domain_only_ops(model) -> list[str]:
    """Friendly names of the ops that feed only the ``domain`` output (edgeblood.domain): left in float,
    as the ONNX int8 path does (edgeblood.exporters.onnx.quantize.domain_only_nodes says why)."""
    def ancestors(results) -> set[str]:
        seen, stack = set(), [r for r in results]
        while stack:
            op = stack.pop()
            name = op.get_friendly_name()
            if name in seen:
                continue
            seen.add(name)
            stack.extend(op.input_value(i).get_node() for i in range(op.get_input_size()))
        return seen

    results = model.get_results()
    domain = [r for r in results if "domain" in r.input_value(0).get_names()]
    if not domain:
        return []
    only = ancestors(domain) - ancestors([r for r in results if r not in domain])
    kinds = {op.get_friendly_name(): op.get_type_name() for op in model.get_ops()}
    return sorted(n for n in only if kinds.get(n) not in ("Result", "Parameter", "Constant"))


def _val_accuracy(model, images: np.ndarray, labels: np.ndarray, batch: int = 64) -> float:
    """Top-1 val accuracy of an (unsaved) OpenVINO model, compiled in f32 so the check sees int8 kernels, not bf16."""
    import openvino as ov

    from edgeblood.exporters.openvino.runtime import probabilities_port

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    port = probabilities_port(compiled)
    preds = []
    for i in range(0, len(images), batch):
        chunk = images[i : i + batch]
        if len(chunk) < batch and compiled.input(0).get_partial_shape()[0].is_static:
            chunk = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        preds.append(compiled(chunk)[port].argmax(1)[: len(images) - i])
    return float((np.concatenate(preds) == labels).mean())


def _count_fake_quantize(model) -> int:
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def _int8_layers(model) -> dict[str, str]:
    """The layers that read int8 data (a FakeQuantize feeds them), by friendly name -> op type.

    What accuracy control returns to float is the difference between two such sets: NNCF reports the
    layers it reverted only in its log, not in what it returns.
    """
    layers = {}
    for op in model.get_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        for output in op.outputs():
            for target in output.get_target_inputs():
                node = target.get_node()
                layers[node.get_friendly_name()] = node.get_type_name()
    return layers


def _set_precision(model, precision: str) -> None:
    if model.has_rt_info([RT_INFO_SECTION]):
        write_rt_info(model, {"precision": precision})


@contextlib.contextmanager
def _quiet_nncf(nncf):
    """NNCF logs every step at INFO and draws its own progress bars on stdout; the CLI has its own."""
    import io
    import logging

    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


# ---------------------------------------------------------------------------------- the methods

def _nncf_variants(options) -> list[Variant]:
    return [Variant(None, "int8 NNCF", "openvino", "int8", "openvino/model-int8.xml", tag="nncf", params={"max_drop": options.max_drop})]


def _make_nncf(job: QuantizeJob) -> dict:
    max_drop = job.params["max_drop"]
    t0 = time.perf_counter()
    _, info = quantize(job.source, job.dest, job.calibration, max_drop=max_drop, validation=job.validation if max_drop is not None else None)
    return {"seconds": round(time.perf_counter() - t0, 3), "method": info.method, "preset": info.preset,
            "bias_correction": info.bias_correction,
            "calibration": {**job.calibration_info, "method": f"nncf min-max (preset {info.preset})"},
            **({"max_drop_pt": info.max_drop_pt, "validation": "val split", "accuracy_control": info.accuracy_control}
               if info.max_drop_pt is not None else {}),
            "notes": info.notes}


register(QuantizeMethod(
    name="nncf", target="openvino", quantize="int8", variants=_nncf_variants, make=_make_nncf, bounds_accuracy_drop=True,
    libraries=(("openvino", "openvino", "openvino"), ("nncf", "nncf", "openvino")),
    description="NNCF post-training int8 (full bias correction); above --max-drop on val, NNCF accuracy control"))

"""Does this CPU's int8 kernel compute what the int8 model says? A check run by `compress` on every ONNX static int8 artifact.

A QDQ model defines its integer arithmetic exactly, but ONNX Runtime fuses it into kernels that differ between CPUs:
on x86 without VNNI, U8S8 convolutions add pairs of products into a saturating int16 (see
``quantize.first_layer_weights``), so the same file gave 92.55 % on an AVX2 EPYC and 96.55 % on a VNNI one. The
reference is the same graph with every ONNX Runtime graph optimization off: QuantizeLinear, DequantizeLinear and
float operators, which round like the model says and cannot saturate. Agreement of the two on the calibration
images tells, on the machine that made the artifact, whether its accuracy figures are the model's or the CPU's
(compress warns below ``measure_and_record.KERNEL_AGREEMENT_MIN``).
"""

from __future__ import annotations

import os

import numpy as np

from edgeblood.contract import PROB_NAME
from edgeblood.errors import import_extra

_BATCH = 256


def kernel_agreement(path: str | os.PathLike, images: np.ndarray) -> dict:
    """Top-1 agreement and largest probability difference between ONNX Runtime's fused int8 kernels and the reference."""
    from edgeblood.cpu import cpu_info, cpu_label

    ort = import_extra("onnxruntime", "onnxruntime", "onnx")
    level = ort.GraphOptimizationLevel
    fused = _probabilities(ort, path, images, level.ORT_ENABLE_ALL)
    reference = _probabilities(ort, path, images, level.ORT_DISABLE_ALL)
    return {"images": int(len(images)), "agreement": float(np.mean(fused.argmax(1) == reference.argmax(1))),
            "max_abs_diff": float(np.abs(fused - reference).max()), "cpu": cpu_label(cpu_info()),
            "reference": "the same QDQ graph with onnxruntime graph optimizations off (QuantizeLinear/DequantizeLinear and float ops)"}


def _probabilities(ort, path, images: np.ndarray, level) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run([PROB_NAME], {name: images[i:i + _BATCH]})[0] for i in range(0, len(images), _BATCH)])

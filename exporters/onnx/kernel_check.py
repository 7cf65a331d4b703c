"""Does this CPU's int8 kernel compute what the int8 model says? A check run by `compress` on every ONNX static int8 artifact.

A QDQ model defines its integer arithmetic, but ONNX Runtime fuses it into kernels that differ between CPUs: on x86
without VNNI, U8S8 convolutions add pairs of products into a saturating int16 (see ``quantize.first_layer_weights``),
so the same file gave 92.55 % on an AVX2 EPYC and 96.55 % on a VNNI one. The reference is the same graph with every
ONNX Runtime graph optimization off: QuantizeLinear, DequantizeLinear and float operators. It follows the model's
rounding within float32 error (its bias add is float, so a value can land one quantization step away) and cannot
saturate. A flip where the reference's two best classes lie within ``KERNEL_TIE_MARGIN`` is a near-tie, not a
kernel fault: measured on the AVX2 EPYC, the 7-bit-first-layer se-cnn 28 px flipped 1 of 3,421 test images, at a
margin under 0.05, while the all-8-bit artifacts of the shipped 28 px models disagreed on 5.7-6.8 % of the 512
calibration images, with probability differences up to 0.99. Compress warns below
``measure_and_record.KERNEL_AGREEMENT_MIN`` of decisive agreement.
"""

from __future__ import annotations

import os

import numpy as np

from edgeblood.contract import PROB_NAME
from edgeblood.errors import import_extra

_BATCH = 256
KERNEL_TIE_MARGIN = 0.05  # a flip where the reference's top-2 probabilities are closer than this is a near-tie


def kernel_agreement(path: str | os.PathLike, images: np.ndarray) -> dict:
    """Top-1 agreement (raw, and without near-tie flips) and probability differences: fused int8 kernels vs the reference."""
    from edgeblood.cpu import this_cpu_label
    from edgeblood.runtimes import runtime_for_artifact

    fused = runtime_for_artifact(path).load(path, device="cpu").predict(images)  # as compress and bench run it
    reference = _unfused_probabilities(path, images)
    best_two = np.sort(reference, 1)[:, -2:]
    flips = fused.argmax(1) != reference.argmax(1)
    near_ties = flips & (best_two[:, 1] - best_two[:, 0] < KERNEL_TIE_MARGIN)
    diff = np.abs(fused.astype(np.float64) - reference)
    return {"images": int(len(images)), "agreement": float(1 - flips.mean()), "decisive_agreement": float(1 - (flips & ~near_ties).mean()),
            "near_tie_flips": int(near_ties.sum()), "tie_margin": KERNEL_TIE_MARGIN,
            "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "cpu": this_cpu_label(),
            "reference": "the same QDQ graph with onnxruntime graph optimizations off (QuantizeLinear/DequantizeLinear and float ops)"}


def _unfused_probabilities(path, images: np.ndarray) -> np.ndarray:
    ort = import_extra("onnxruntime", "onnxruntime", "onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run([PROB_NAME], {name: images[i:i + _BATCH]})[0] for i in range(0, len(images), _BATCH)])

"""LiteRT full-integer int8 with ai-edge-quantizer, from the exported fp32 ``model.tflite``.

Recipe ``static_wi8_ai8``: per-channel symmetric int8 weights and per-tensor int8 activations,
calibrated on the stratified train subset that every int8 path uses, for both signatures of the file
(batch 1 and batch 64 are separate subgraphs with their own activation tensors). The graph input
stays float32 (the virtual INPUT op is left unquantized and a QUANTIZE op sits at the boundary), so
the artifact keeps the tensor contract: float RGB 0-255 in, float probabilities out. Without that
entry the input itself becomes int8 and the app would have to know its scale and zero point.

Two repairs after ``export_model`` (ai-edge-quantizer 0.10): the signatures are pointed back at the
dequantized probabilities (:func:`repoint_signature_outputs`) and the contract metadata
is rewritten with ``precision`` int8 (the quantizer copies the fp32 entry).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeblood.compression.methods import QuantizeJob, QuantizeMethod, Variant, register
from edgeblood.errors import EdgebloodError
from edgeblood.exporters.litert.metadata import as_text

RECIPE = "static_wi8_ai8"
#: The ops of the domain check (tensors named after edgeblood.domain.scorer.DomainScorer, and the signature's
#: domain output) stay float: int8 there moved the flagged share of val captures from 3.9 % to 42 % (se-cnn 28 px).
DOMAIN_IN_FLOAT = [{"regex": pattern, "operation": "*", "algorithm_key": "no_quantize"} for pattern in (".*DomainScorer.*", ".*domain_output.*")]


def quantize_int8(job: QuantizeJob) -> dict:
    import os
    import time

    from edgeblood.contract import INPUT_NAME, artifact_metadata
    from edgeblood.exporters.litert.export import BATCH_SIGNATURES
    from edgeblood.exporters.litert.metadata import write_metadata
    from edgeblood.native_output import silenced

    os.environ.setdefault("TQDM_DISABLE", "1")  # its calibration bar would run under ours
    t0 = time.perf_counter()
    with silenced():
        from ai_edge_quantizer import quantizer, recipe

        q = quantizer.Quantizer(str(job.source), getattr(recipe, RECIPE)() + [{"regex": ".*", "operation": "INPUT", "algorithm_key": "no_quantize"}]
                                + DOMAIN_IN_FLOAT)
        samples = {name: [{INPUT_NAME: batch} for batch in _batches(job.calibration, size)] for name, size in BATCH_SIGNATURES.items()}
        ranges = q.calibrate(samples)
        q.quantize(ranges).export_model(str(job.dest), overwrite=True)
    repaired = repoint_signature_outputs(job.dest)
    write_metadata(job.dest, artifact_metadata(job.run.meta, precision="int8", target="litert", run_name=job.run.name))
    from importlib.metadata import version

    return {"seconds": round(time.perf_counter() - t0, 3),
            "method": f"ai-edge-quantizer {version('ai-edge-quantizer')} {RECIPE}: per-channel symmetric int8 weights, "
                      "per-tensor int8 activations, float32 input and output",
            "calibration": {**job.calibration_info, "method": "min-max over the calibration images, each signature"},
            "signature_outputs_repointed": repaired}


def _batches(images: np.ndarray, size: int) -> list[np.ndarray]:
    """``images`` cut into batches of exactly ``size`` (the last one filled up by repeating from the start)."""
    n = max(1, -(-len(images) // size))
    padded = np.resize(images, (n * size, *images.shape[1:])).astype(np.float32)
    return [padded[i * size : (i + 1) * size] for i in range(n)]


def repoint_signature_outputs(path: str | Path) -> list[str]:
    """Point each signature output at its graph output; returns what was changed.

    ai-edge-quantizer 0.10 adds a DEQUANTIZE after the int8 probabilities and makes its float tensor
    the graph output, but leaves the SignatureDef on the int8 tensor, so a signature runner returns
    int8 codes (e.g. [3, 0, 0, -125, ...]) instead of probabilities. Each dangling signature output is
    moved to the one graph output whose name extends its own (``..._output`` -> ``..._output_dequant``).
    """
    from ai_edge_litert.tools import flatbuffer_utils

    from edgeblood.atomic import write_bytes

    path = Path(path)
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    changed = []
    for sig in model.signatureDefs or []:
        graph = model.subgraphs[sig.subgraphIndex]
        for out in sig.outputs:
            if out.tensorIndex in graph.outputs:
                continue
            name = graph.tensors[out.tensorIndex].name
            candidates = [i for i in graph.outputs if graph.tensors[i].name.startswith(name)]
            if len(candidates) != 1:
                raise EdgebloodError(f"{path}: signature output {as_text(out.name)} is not a graph output; re-run the quantization")
            changed.append(f"{as_text(sig.signatureKey)}/{as_text(out.name)}: {as_text(name)} -> {as_text(graph.tensors[candidates[0]].name)}")
            out.tensorIndex = candidates[0]
    if changed:
        write_bytes(path, bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    return changed


register(QuantizeMethod(
    name="ai-edge-quantizer", target="litert", quantize="int8", make=quantize_int8,
    libraries=(("ai_edge_quantizer", "ai-edge-quantizer", "litert"), ("ai_edge_litert", "ai-edge-litert", "litert")),
    variants=lambda o: [Variant(None, "int8 full-integer", "litert", "int8", "model-int8.tflite", tag="static int8")],
    description="full-integer int8 (int8 weights and activations, float I/O) with ai-edge-quantizer"))

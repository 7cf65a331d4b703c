"""LiteRT (TensorFlow Lite) export for Android: ``model.tflite``, XNNPACK-ready, the contract inside.

Converted with litert-torch from the same deployment-wrapped model as every other artifact, so the
input is the README's tensor contract (``image`` float32 NCHW RGB 0-255; normalisation and the
transpose to NHWC that XNNPACK works in are inside the graph) and the outputs are ``probabilities``
float32 [N, 8] and ``label`` [N]. ``label`` is int32, TFLite's ARG_MAX type (int64 would need the
converter's x64 mode and an app reads it as an int either way).

Fixed batch sizes, as signatures: litert-torch 0.10 cannot convert a dynamic batch dimension
(``AssertionError: float32[-9223372036854775808, ...]``, litert-torch#685) and the XNNPACK delegate
cannot re-shape a batch-1 graph to 64 (``XNNPack delegate failed to reshape``). The file therefore holds
two signatures over the same weights: ``serving_default`` (batch 1, what a phone app calls) and
``batch64`` (throughput); the second adds ~2 % to the file. Measured on the se-cnn 28 px run:
fp32 100 % top-1 agreement with PyTorch, max |dp| 8e-7.

Metadata: the flat string map of ``edgeblood.contract`` as one JSON entry ``edgeblood`` in the
flatbuffer's ``Model.metadata`` table (the format's own place for it), readable with ai-edge-litert
alone (``edgeblood.exporters.litert.metadata``).
"""

from __future__ import annotations

from pathlib import Path

from edgeblood.contract import DOMAIN_NAME, INPUT_NAME, LABEL_NAME, PROB_NAME, fixed_batch_input
from edgeblood.errors import EdgebloodError
from edgeblood.exporters.litert.metadata import write_metadata
from edgeblood.targets import ExportJob, Target, register

BATCH_SIGNATURES = {"serving_default": 1, "batch64": 64}


def export_litert(model, metadata: dict[str, str], out_path: str | Path, *, in_size: int) -> dict:
    """Convert ``model`` (a RawPixelClassifier returning (probabilities, label)) to ``out_path`` (.tflite)."""
    import os
    import time

    import torch

    from edgeblood.native_output import silenced

    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "0")
    with silenced():
        import litert_torch

    class NamedOutputs(torch.nn.Module):  # litert-torch names signature outputs after the dict keys
        def __init__(self, wrapped):
            super().__init__()
            self.wrapped = wrapped

        def forward(self, image):
            outputs = self.wrapped(image)  # (probabilities, label[, domain])
            return dict(zip((PROB_NAME, LABEL_NAME, DOMAIN_NAME), outputs))

    module = NamedOutputs(model.eval()).eval()
    out_path = Path(out_path)
    t0 = time.perf_counter()
    builder = litert_torch
    for name, batch in BATCH_SIGNATURES.items():
        builder = builder.signature(name, module, sample_kwargs={INPUT_NAME: torch.full((batch, 3, in_size, in_size), 128.0)})
    try:
        with silenced():  # absl/INFO lines and torch.export deprecation chatter from the converter
            builder.convert().export(str(out_path))
    except Exception as exc:
        raise EdgebloodError(f"litert-torch could not convert the model ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                             "export ONNX instead or report the model config") from None
    write_metadata(out_path, metadata)
    version = getattr(litert_torch, "__version__", "?")
    return {"converter": f"litert-torch {version} (torch.export)", "signatures": dict(BATCH_SIGNATURES),
            "seconds": round(time.perf_counter() - t0, 3)}


def tensor_input(size: int) -> dict:
    return fixed_batch_input(size, BATCH_SIGNATURES, "signatures")


# ----------------------------------------------------------------------------------- the target

def _export_target(job: ExportJob) -> dict:
    from edgeblood.preprocess import wrap_run

    run = job.run
    return export_litert(wrap_run(run), job.metadata, job.out, in_size=run.in_size)


TARGET = register(Target(
    name="litert", title="LiteRT", runtime="litert", extra="litert", libraries=("litert_torch", "ai_edge_litert"),
    artifacts={"fp32": "model.tflite"}, outputs=(PROB_NAME, LABEL_NAME), export=_export_target, input_contract=tensor_input, order=40,
    description="LiteRT / TensorFlow Lite (.tflite, XNNPACK) for Android; full-integer int8 from `edgeblood compress`",
))

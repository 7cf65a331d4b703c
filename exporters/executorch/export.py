"""ExecuTorch export: ``model.pte``, the graph delegated to XNNPACK, the contract inside the program.

``torch.export`` of the same deployment-wrapped model as every other artifact (input ``image``
float32 NCHW RGB 0-255, normalisation inside; outputs ``probabilities`` float32 [N, 8] and ``label``
int64 [N]), lowered with ``to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])``.

Fixed batch sizes, as methods: ``forward`` (batch 1, the app's call) and ``forward_batch64``
(throughput) share their weights (the program grows by 0.6 %). A dynamic batch lowers too, but every
call then pays XNNPACK's re-shape: measured on the se-cnn 28 px run, batch-1 p50 2.1 ms dynamic vs
0.95 ms static on one AVX2 core; and a dynamic program exported with a small example batch
silently accepts only batches up to a bound XNNPACK derives from it ("Attempted to resize a bounded
tensor" above 15 for an example batch of 2, executorch 1.5.1).

Metadata: the flat string map of ``edgeblood.contract`` as JSON, returned by the constant method
``edgeblood_metadata`` (a .pte has no free-form metadata table; constant methods are ExecuTorch's
way to ship values with a program, and the Android/iOS runtimes can call them like ``forward``).
"""

from __future__ import annotations

from pathlib import Path

from edgeblood.contract import LABEL_NAME, PROB_NAME, fixed_batch_input
from edgeblood.errors import EdgebloodError
from edgeblood.exporters.executorch.metadata import constant_methods
from edgeblood.targets import ExportJob, Target, register

BATCH_METHODS = {"forward": 1, "forward_batch64": 64}


def export_executorch(model, metadata: dict[str, str], out_path: str | Path, *, in_size: int, programs: dict | None = None) -> dict:
    """Lower ``model`` (a RawPixelClassifier returning (probabilities, label)) to ``out_path`` (.pte).

    ``programs``: already exported programs by method name (the int8 path passes its PT2E-converted ones).
    """
    import time

    import torch

    from edgeblood.atomic import write_bytes
    from edgeblood.native_output import silenced

    with silenced():  # torchao/executorch print CPU-probe and missing-CUDA-kernel lines at import
        import executorch
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

    t0 = time.perf_counter()
    try:
        with silenced():
            if programs is None:
                programs = {name: torch.export.export(model.eval(), (example_input(batch, in_size),)) for name, batch in BATCH_METHODS.items()}
            program = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()],
                                                  constant_methods=constant_methods(metadata)).to_executorch()
    except Exception as exc:
        raise EdgebloodError(f"ExecuTorch could not lower the model ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                             "export ONNX instead or report the model config") from None
    write_bytes(out_path, bytes(program.buffer))
    return {"converter": f"torch.export + executorch {getattr(executorch, '__version__', '?')} to_edge_transform_and_lower",
            "delegate": "XnnpackPartitioner", "methods": dict(BATCH_METHODS), "seconds": round(time.perf_counter() - t0, 3)}


def example_input(batch: int, in_size: int):
    import torch

    return torch.full((batch, 3, in_size, in_size), 128.0)


def tensor_input(size: int) -> dict:
    return fixed_batch_input(size, BATCH_METHODS, "methods")


# ----------------------------------------------------------------------------------- the target

def _export_target(job: ExportJob) -> dict:
    from edgeblood.preprocess import wrap_run

    run = job.run
    return export_executorch(wrap_run(run), job.metadata, job.out, in_size=run.in_size)


TARGET = register(Target(
    name="executorch", title="ExecuTorch", runtime="executorch", extra="executorch", libraries=("executorch",),
    artifacts={"fp32": "model.pte"}, outputs=(PROB_NAME, LABEL_NAME), export=_export_target, input_contract=tensor_input, order=50,
    description="ExecuTorch program (.pte) delegated to XNNPACK for Android/iOS; PT2E int8 from `edgeblood compress`",
))

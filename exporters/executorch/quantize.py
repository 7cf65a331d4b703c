"""ExecuTorch int8: PT2E static quantization for XNNPACK, from the run's PyTorch model.

PT2E quantizes the exported PyTorch graph, not a finished .pte, so this method starts from the run:
``torch.export`` of the deployment-wrapped model (dynamic batch, example batch 64), ``prepare_pt2e``
with ``XNNPACKQuantizer`` (symmetric per-channel int8 weights, per-tensor int8 activations),
calibration on the stratified train subset every int8 path uses, ``convert_pt2e``, then the same
lowering as the fp32 export (``forward`` batch 1 and ``forward_batch64``, XNNPACK delegate, the
contract as the ``edgeblood_metadata`` constant method, ``precision`` int8). The fp32 ``model.pte``
is what the int8 rows are compared with, not what they are made from.
"""

from __future__ import annotations

from edgeblood.compression.methods import QuantizeJob, QuantizeMethod, Variant, register


def quantize_int8(job: QuantizeJob) -> dict:
    import time

    import torch

    from edgeblood.contract import artifact_metadata
    from edgeblood.exporters.executorch.export import BATCH_METHODS, example_input, export_executorch
    from edgeblood.native_output import silenced
    from edgeblood.preprocess import wrap_run

    run = job.run
    t0 = time.perf_counter()
    with silenced():
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        # The domain check stays in float: quantizing its distance arithmetic too made the lowered program fail to
        # load ("Failed to load method forward"), so every node but those of the "domain" submodule gets int8.
        # se-cnn-28, 96 sample images: 834 kB (fp32 2.1 MB), argmax as PyTorch fp32 on 95/96, domain scores within
        # 0.07 of fp32 (they read int8 features), the outside flag the same on 96/96.
        model = wrap_run(run).eval()
        config = get_symmetric_quantization_config(is_per_channel=True)
        with_domain = model.domain is not None
        quantizer = XNNPACKQuantizer().set_global(config).set_filter_function(_outside_domain)
        batch = torch.export.Dim("batch", min=1, max=1024)
        graph = torch.export.export(model, (example_input(64, run.in_size),), dynamic_shapes=({0: batch},)).module()
        prepared = prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for i in range(0, len(job.calibration), 32):
                prepared(torch.from_numpy(job.calibration[i : i + 32]))
        quantized = convert_pt2e(prepared)
        programs = {name: torch.export.export(quantized, (example_input(n, run.in_size),)) for name, n in BATCH_METHODS.items()}
    details = export_executorch(None, artifact_metadata(run.meta, precision="int8", target="executorch", run_name=run.name, domain=with_domain), job.dest,
                                in_size=run.in_size, programs=programs)
    return {**details, "seconds": round(time.perf_counter() - t0, 3),
            "method": "PT2E static int8 (torchao prepare_pt2e/convert_pt2e), XNNPACKQuantizer symmetric per-channel weights, "
                      "per-tensor activations; lowered to XNNPACK" + ("; the domain check in float" if with_domain else ""),
            "calibration": {**job.calibration_info, "method": "PT2E observers (min-max) over the calibration images"},
            "source": "the run's PyTorch model (PT2E quantizes the exported graph; the fp32 model.pte is the baseline)"}


def _outside_domain(node) -> bool:
    """PT2E filter: a node not traced from the wrapper's ``domain`` submodule (edgeblood.preprocess.RawPixelClassifier)."""
    return not any(path == "domain" or path.startswith("domain.") for path, _ in node.meta.get("nn_module_stack", {}).values())


register(QuantizeMethod(
    name="pt2e-xnnpack", target="executorch", quantize="int8", make=quantize_int8,
    libraries=(("executorch", "executorch", "executorch"), ("torchao", "torchao", "executorch")),
    variants=lambda o: [Variant(None, "int8 PT2E", "executorch", "int8", "model-int8.pte", tag="pt2e xnnpack")],
    description="PT2E static int8 for XNNPACK (torchao), lowered like the fp32 program"))

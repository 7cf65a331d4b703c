"""Core ML weight compression with coremltools.optimize.coreml (works on any OS; predicting needs macOS).

* int8 linear weight quantization: per-channel symmetric int8 weights, dequantized on load
  (``constexpr_affine_dequantize``) - a 4x smaller file, fp math unchanged on the device.
* palettization (4 or 6 bit): each weight tensor becomes indices into a 16/64-entry k-means look-up
  table (``constexpr_lut_to_dense``) - the Neural Engine's native compressed-weight format.
* activation quantization (W8A8) needs calibration *predictions* through Core ML, i.e. macOS;
  elsewhere it is skipped and ``activation_skip_reason`` says so.

The compressed model keeps the fp32 model's inputs, outputs, classifier labels and metadata
(``precision`` updated); it is saved into a temporary folder and moved into place whole.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from pathlib import Path

from edgeblood.compression.methods import QuantizeMethod, Variant, register, timed
from edgeblood.errors import EdgebloodError
from edgeblood.exporters.coreml.metadata import write_metadata

PALETTE_BITS = (4, 6)
WEIGHT_THRESHOLD = 256  # compress every tensor with >= 256 elements (coremltools' default 2048 skips most of a small CNN)


def activation_skip_reason() -> str | None:
    """Why W8A8 activation quantization cannot run here (None where it can)."""
    if platform.system() != "Darwin":
        return "Core ML activation quantization calibrates by running the model through Core ML, which needs macOS; skipped on " + platform.system()
    return None


def quantize_weights_int8(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Per-channel symmetric int8 weights (coremltools ``linear_quantize_weights``)."""
    def apply(mlmodel):
        import coremltools.optimize.coreml as cto

        config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=WEIGHT_THRESHOLD),
            op_name_configs=domain_weights_uncompressed(mlmodel))
        return cto.linear_quantize_weights(mlmodel, config=config)

    return _transform(src, dest, apply, "int8-weights")


def palettize(src: str | os.PathLike, dest: str | os.PathLike, nbits: int) -> Path:
    """k-means palettized weights with ``nbits`` per weight (coremltools ``palettize_weights``)."""
    if nbits not in (1, 2, 3, 4, 6, 8):
        raise EdgebloodError(f"palettization supports 1, 2, 3, 4, 6 or 8 bits, not {nbits}")

    def apply(mlmodel):
        import coremltools.optimize.coreml as cto

        config = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(nbits=nbits, mode="kmeans", weight_threshold=WEIGHT_THRESHOLD),
                                        op_name_configs=domain_weights_uncompressed(mlmodel))
        return cto.palettize_weights(mlmodel, config=config)

    return _transform(src, dest, apply, f"palettized-{nbits}bit")


def domain_weights_uncompressed(mlmodel) -> dict[str, None]:
    """``op_name_configs`` that leave the domain check's weights as they are (the other int8 paths keep it in float too:
    its whitening matrix in 4 or 8 bits moves the distances that the threshold of 1 was fitted on)."""
    from coremltools.converters.mil.frontend.milproto import load as milproto_load
    from coremltools.models.utils import _convert_model_spec_to_pymil_prog  # what coremltools.optimize itself reads

    from edgeblood.contract import DOMAIN_NAME
    from edgeblood.exporters.coreml.export import domain_only_ops

    if DOMAIN_NAME not in {o.name for o in mlmodel.get_spec().description.output}:
        return {}
    prog = _convert_model_spec_to_pymil_prog(mlmodel, mlmodel.get_spec().specificationVersion, milproto_load.load)
    kinds = {op.name: op.op_type for op in prog.functions["main"].operations}
    return {name: None for name in domain_only_ops(prog) if kinds.get(name) == "const"}


def _transform(src, dest, fn, precision: str) -> Path:
    from edgeblood.exporters.coreml.export import quiet, require_coremltools

    src, dest = Path(src), Path(dest)
    if not src.exists():
        raise EdgebloodError(f"{src} does not exist; export Core ML first with `edgeblood export RUN --target coreml`")
    ct = require_coremltools()
    with quiet():
        compressed = fn(ct.models.MLModel(str(src), skip_model_load=True))
        write_metadata(compressed, {"precision": precision})
        compressed.version = f"{compressed.version.rsplit('-', 1)[0]}-{precision}" if compressed.version else precision
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            staged = tmp / dest.name
            compressed.save(str(staged))
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(staged, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# ---------------------------------------------------------------------------------- the methods

def _palette_variants(options) -> list[Variant]:
    return [Variant(None, f"{b}-bit palette", "coreml", f"palettized-{b}bit", f"model-palettized{b}.mlpackage", tag="k-means",
                    params={"bits": b}) for b in options.palettize_bits]


_COREMLTOOLS = (("coremltools", "coremltools", "coreml"),)
register(QuantizeMethod(
    name="coreml-linear-int8", target="coreml", quantize="int8", libraries=_COREMLTOOLS,
    variants=lambda o: [Variant(None, "int8 weights", "coreml", "int8-weights", "model-int8.mlpackage", tag="linear weights")],
    make=lambda job: timed(quantize_weights_int8, job.source, job.dest,
                           details={"method": "coremltools linear_quantize_weights int8 per-channel symmetric"}),
    description="int8 per-channel weights (W8, fp compute)"))
register(QuantizeMethod(
    name="coreml-palettize", target="coreml", quantize="int8", libraries=_COREMLTOOLS, variants=_palette_variants,
    make=lambda job: timed(palettize, job.source, job.dest, job.params["bits"],
                           details={"method": f"coremltools palettize_weights kmeans {job.params['bits']} bit"}),
    description="k-means palettized weights, one variant per --palettize-bits"))

"""The Core ML adapter: ``.mlpackage`` / ``.mlmodel`` behind ``edgeblood.runtimes`` (predictions need macOS)."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from edgeblood.contract import DOMAIN_NAME
from edgeblood.exporters.coreml.metadata import read_coreml_metadata
from edgeblood.runtimes import LoadedModel, Runtime, import_ok, register_runtime, timed


@register_runtime
class CoreMLRuntime(Runtime):
    """Core ML through coremltools. Conversion works anywhere; predictions need macOS.

    The exported model takes an RGB image (ImageType), so float NCHW 0-255 batches are turned into
    8-bit PIL images (exact for pixels that came from 8-bit files, the deployment case).
    """

    name = "coreml"
    extra = "coreml"
    suffixes = (".mlpackage", ".mlmodel")
    _UNITS = {"cpu_only": "CPU_ONLY", "cpu_and_gpu": "CPU_AND_GPU", "cpu_and_ne": "CPU_AND_NE", "all": "ALL"}

    def available(self) -> tuple[bool, str]:
        ok, why = import_ok("coremltools", "coreml")
        if not ok:
            return ok, why
        if platform.system() != "Darwin":
            return False, "coremltools predictions need macOS (conversion and spec checks work here)"
        return True, ""

    def devices(self) -> list[str]:
        if not self.available()[0]:
            return []
        import coremltools as ct

        return [d for d, unit in self._UNITS.items() if hasattr(ct.ComputeUnit, unit)]

    def _load(self, artifact: Path, device: str, threads: int | None) -> LoadedModel:
        import coremltools as ct
        from PIL import Image

        units = getattr(ct.ComputeUnit, self._UNITS[device])
        mlmodel, seconds = timed(lambda: ct.models.MLModel(str(artifact), compute_units=units))
        spec = mlmodel.get_spec()
        input_name = spec.description.input[0].name
        prob_name = spec.description.predictedProbabilitiesName or "probabilities"
        meta = read_coreml_metadata(mlmodel)
        classes = list(meta.get("classes") or [])

        def outputs(x: np.ndarray):
            for img in np.clip(np.rint(x), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1):
                yield mlmodel.predict({input_name: Image.fromarray(img, "RGB")})

        def predict(x: np.ndarray) -> np.ndarray:
            rows = []
            for out in outputs(x):
                probs = out[prob_name]
                if isinstance(probs, dict):  # classifier output: {label: probability}, ordered as the metadata's classes
                    rows.append([probs[c] for c in (classes or list(probs))])
                else:
                    rows.append(np.ravel(probs))
            return np.asarray(rows, dtype=np.float32)

        def domain(x: np.ndarray) -> np.ndarray:
            return np.asarray([np.ravel(out[DOMAIN_NAME]) for out in outputs(x)], dtype=np.float32)

        size = spec.description.input[0].type.imageType.width or None
        return LoadedModel(
            runtime=self.name, device=device, threads=None, artifact=artifact,
            load_seconds=seconds, run=predict, metadata=meta, input_size=size, handle=mlmodel,
            domain_run=domain if DOMAIN_NAME in {o.name for o in spec.description.output} else None,
        )

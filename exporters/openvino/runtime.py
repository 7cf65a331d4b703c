"""The OpenVINO adapter: IRs (``.xml`` + ``.bin``) behind ``edgeblood.runtimes``, and the helpers its
quantizer and the benchmark share (the probabilities port, the kernels the CPU plugin chose)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeblood.errors import EdgebloodError
from edgeblood.exporters.openvino.metadata import read_openvino_metadata
from edgeblood.runtimes import LoadedModel, Runtime, import_ok, register_runtime, timed


@register_runtime
class OpenVinoRuntime(Runtime):
    """OpenVINO on an IR (.xml + .bin) or an .onnx file read directly.

    On CPU the inference precision is pinned to f32: OpenVINO otherwise runs in bf16 on CPUs with
    AVX-512 BF16/AMX, which would silently change an "fp32" row's accuracy. fp16 IRs store fp16
    weights and are decompressed to f32 on CPU.
    """

    name = "openvino"
    extra = "openvino"
    suffixes = (".xml",)

    def available(self) -> tuple[bool, str]:
        return import_ok("openvino", "openvino")

    def devices(self) -> list[str]:
        if not self.available()[0]:
            return []
        import openvino as ov

        return [d.lower() for d in ov.Core().available_devices]

    def _load(self, artifact: Path, device: str, threads: int | None) -> LoadedModel:
        import openvino as ov

        core = ov.Core()
        config: dict[str, Any] = {}
        if device.startswith("cpu"):
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads

        def load():
            from edgeblood.native_output import silenced

            try:
                with silenced():  # a foreign .xml makes other frontends print parse errors (tensorflow.GraphDef) to fd 2
                    model = core.read_model(str(artifact))
                shape = model.input(0).get_partial_shape()
                if shape.rank.is_static and shape[0].is_static:  # static batch: make it dynamic
                    shape[0] = ov.Dimension.dynamic()
                    model.reshape({model.input(0): shape})
                return model, core.compile_model(model, device.upper(), config)
            except RuntimeError as exc:
                raise EdgebloodError(openvino_load_error(artifact, exc)) from None

        (model, compiled), seconds = timed(load)
        predict = _probabilities_call(compiled)
        shape = model.input(0).get_partial_shape()
        frames = model.input(0).get_element_type() == ov.Type.u8 and shape.rank.is_static and shape[3].is_static and shape[3].get_length() == 3
        size = shape[3].get_length() if shape.rank.is_static and shape[3].is_static and not frames else None

        def fixed_batch_call(batch: int) -> Callable[[np.ndarray], np.ndarray]:
            # A dynamic batch dimension costs OpenVINO shape inference on every call (measured: ~25 % of a
            # 28 px se-cnn int8 inference at batch 1), so latency is timed on a model compiled for the batch.
            static = model.clone()  # the IR already read, not a second read of the file
            static.reshape({static.input(0): [batch, *[d.get_length() for d in list(shape)[1:]]]})
            return _probabilities_call(core.compile_model(static, device.upper(), config))

        return LoadedModel(
            runtime=self.name, device=device, threads=threads, artifact=artifact,
            load_seconds=seconds, run=predict, metadata=read_openvino_metadata(model), input_size=size, handle=compiled,
            kernels=lambda: openvino_kernels(compiled), domain_run=_named_output_call(compiled, "domain"), takes_frames=frames,
            joint_run=_probabilities_and_domain_call(compiled),
            fixed_batch_call=fixed_batch_call if shape.rank.is_static and all(d.is_static for d in list(shape)[1:]) else None,
        )


def openvino_kernels(compiled: Any) -> dict[str, int]:
    """Counts of ``primitiveType`` (the CPU plugin's kernel, named after its ISA and precision) over the execution graph."""
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "primitiveType" in info:
            kind = info["primitiveType"].astype(str)
            if kind and not kind.lower().startswith(("unknown", "undef")):  # reshapes, constants: no kernel
                counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def probabilities_port(compiled: Any) -> Any:
    """The output port named ``probabilities`` of an OpenVINO compiled model (its first output otherwise)."""
    return next((port for port in compiled.outputs if "probabilities" in port.get_names()), compiled.outputs[0])


def _output_port(compiled: Any, name: str) -> Any | None:
    """The compiled model's output called ``name``, None when it has none."""
    return next((p for p in compiled.outputs if name in p.get_names()), None)


def _named_output_call(compiled: Any, name: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """A reusable infer request returning the output called ``name``, None when the model has none."""
    port = _output_port(compiled, name)
    if port is None:
        return None
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x}, share_inputs=True)[port].copy()


def _probabilities_and_domain_call(compiled: Any) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
    """One infer request returning both the probabilities and the ``domain`` output; None when there is no domain output."""
    domain = _output_port(compiled, "domain")
    if domain is None:
        return None
    probabilities, request = probabilities_port(compiled), compiled.create_infer_request()

    def both(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = request.infer({0: x}, share_inputs=True)
        return result[probabilities].copy(), result[domain].copy()

    return both


def _probabilities_call(compiled: Any) -> Callable[[np.ndarray], np.ndarray]:
    """One reusable infer request on ``compiled``: a float32 NCHW batch in, its probabilities out."""
    port, request = probabilities_port(compiled), compiled.create_infer_request()
    return lambda x: request.infer({0: x}, share_inputs=True)[port].copy()


def openvino_load_error(artifact: Path, exc: BaseException) -> str:
    """OpenVINO's load failure as one line: its real reason and the fix.

    OpenVINO's message starts with the C++ location (``Exception from src/inference/src/cpp/core.cpp:84:``)
    and ``Check '...' failed at ...`` lines; the reason a person can act on is the last other line.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(("Exception from ", "Check '"))]
    reason = reasons[-1] if reasons else (lines[-1] if lines else type(exc).__name__)
    weights = artifact.with_suffix(".bin")
    if "bin file cannot be found" in reason or "Empty weights" in reason:
        fix = f"its weights file {weights.name} is missing or empty: copy {artifact.name} and {weights.name} together"
    elif "Incorrect weights" in reason:
        fix = f"{weights.name} does not match {artifact.name} (truncated, or from another export): copy both files of one export"
    elif "Unable to read the model" in reason or "parsing" in reason.lower():
        fix = f"{artifact.name} is not a complete OpenVINO IR (damaged or truncated XML)"
        reason = reason.split(" Please check")[0]  # the rest lists frontends, no help here
    else:
        fix = "the IR may be damaged or from an incompatible OpenVINO version"
    return f"openvino could not load {artifact}: {reason[:200]} - {fix}; or re-export it with `edgeblood export RUN --target openvino`"

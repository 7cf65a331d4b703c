"""One small interface over every inference runtime: load an artifact, predict probabilities.

    rt = runtime_for_artifact("runs/x/export/model.onnx")      # or get_runtime("openvino")
    ok, why = rt.available()                                   # (False, 'pip install "edgeblood[openvino]"')
    m = rt.load(path, device="cpu", threads=1)
    probs = m.predict(images)        # float32 NCHW RGB 0-255 (the deployment contract) -> [N, C]

Adding a runtime is one new ``Runtime`` subclass decorated with ``@register_runtime``; nothing else
changes. Heavy libraries are imported inside the adapters so that listing runtimes is cheap and a
missing one is a reason string, never an ImportError.

It lives in the core of the package, not in ``edgeblood.bench``, because every consumer of an
artifact runs it through this interface: ``predict`` (edgeblood.inference), ``compress`` (calibration and the
measured rows), the exporters' parity check and the benchmark itself.
"""

from __future__ import annotations

import os
import platform
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeblood.errors import EdgebloodError

DEFAULT_CHUNK = 256  # images per runtime call in predict(); bounds memory on full test splits


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC images (as edgeblood.data returns them) -> float32 NCHW 0-255, the artifacts' input."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise EdgebloodError(f"expected uint8 images shaped [N, H, W, 3], got {images.shape}")
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)


class LoadedModel:
    """A model ready to predict. ``predict`` takes float32 NCHW RGB 0-255 and returns probabilities [N, C].

    ``_run`` is the runtime's own inference call on one chunk (what a benchmark should time).
    """

    def __init__(
        self,
        *,
        runtime: str,
        device: str,
        threads: int | None,
        artifact: Path,
        load_seconds: float,
        run: Callable[[np.ndarray], np.ndarray],
        metadata: dict[str, Any],
        input_size: int | None = None,
        handle: Any = None,
        fixed_batch_call: Callable[[int], Callable[[np.ndarray], np.ndarray] | None] | None = None,
        kernels: Callable[[], dict[str, int]] | None = None,
        domain_run: Callable[[np.ndarray], np.ndarray] | None = None,
        takes_frames: bool = False,
    ):
        self.runtime = runtime
        self.device = device
        self.threads = threads
        self.artifact = Path(artifact)
        self.load_seconds = load_seconds
        self.input_size = input_size
        self.handle = handle  # the runtime's own object (InferenceSession, CompiledModel, nn.Module, MLModel)
        self._run = run
        self._metadata = metadata
        self._fixed_batch_call = fixed_batch_call
        self._kernels = kernels
        self._domain_run = domain_run
        # A capture variant (exporters/capture.py): whole uint8 NHWC frames in, the framing inside its graph.
        self.takes_frames = takes_frames

    @property
    def has_domain(self) -> bool:
        """Whether the artifact carries the domain check's output (edgeblood.domain)."""
        return self._domain_run is not None

    def domain(self, images: np.ndarray, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
        """The ``domain`` output [N, 2] (feature and image distance / threshold; > 1 = unlike training) for
        the same input as ``predict``; a second pass over the images (predict stays one output, as timed)."""
        if self._domain_run is None:
            raise EdgebloodError(f"{self.artifact.name} has no domain output; re-export the run with a current edgeblood")
        return self._chunked(self._domain_run, self._checked(images), chunk)

    def kernels(self) -> dict[str, int] | None:
        """The kernels the runtime chose, by implementation name and count, where it can tell (OpenVINO's
        execution graph: e.g. ``brgconv_avx2_I8`` says int8 convolutions ran with AVX2); None elsewhere."""
        return self._kernels() if self._kernels is not None else None

    def timed_call(self, batch: int) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
        """(the inference call to time at ``batch``, how its input shape was fixed).

        "static": a model compiled (OpenVINO) or exported (LiteRT signature, ExecuTorch method) for
        exactly this batch, as an app that serves that batch would deploy it; "dynamic": one model for
        every batch (``_run``); "batch-1 calls": a fixed-batch artifact with no entry point of this
        batch, timed as the loop of batch-1 calls an app would make.
        """
        if self._fixed_batch_call is None:
            return self._run, "dynamic"
        call = self._fixed_batch_call(batch)
        return (call, "static") if call is not None else (self._run, "batch-1 calls")

    def metadata(self) -> dict[str, Any]:
        """The contract metadata read back from the artifact (see edgeblood.contract)."""
        return dict(self._metadata)

    def predict(self, images: np.ndarray, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
        """Probabilities [N, C] for float32 NCHW RGB 0-255 ``images`` (uint8 NCHW is cast)."""
        return self._chunked(self._run, self._checked(images), chunk)

    @staticmethod
    def _chunked(call: Callable[[np.ndarray], np.ndarray], images: np.ndarray, chunk: int) -> np.ndarray:
        if len(images) <= chunk:
            return np.asarray(call(images), dtype=np.float32)
        return np.concatenate([np.asarray(call(images[i : i + chunk]), dtype=np.float32) for i in range(0, len(images), chunk)])

    def _checked(self, images: np.ndarray) -> np.ndarray:
        if self.takes_frames:
            raise EdgebloodError(f"{self.artifact.name} takes whole captures (uint8 [N, H, W, 3], framed inside its graph), not framed "
                                 "model inputs; call predict_frames, or use the plain model (model.onnx, openvino/model.xml)")
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1] != 3:
            raise EdgebloodError(f"{self.runtime}: expected images shaped [N, 3, H, W] (NCHW RGB), got {images.shape}")
        if self.input_size and images.shape[2:] != (self.input_size, self.input_size):
            raise EdgebloodError(
                f"{self.runtime}: the model takes {self.input_size}x{self.input_size} px, got {images.shape[2]}x{images.shape[3]}; "
                "resize the images first (edgeblood predict does this)"
            )
        if images.dtype != np.float32:
            images = images.astype(np.float32)
        return np.ascontiguousarray(images)

    def predict_frames(self, frames: np.ndarray) -> np.ndarray:
        """Probabilities [N, C] of a capture variant for uint8 RGB ``frames`` [N, H, W, 3] (one frame size per call:
        the graph slices one window out of the whole batch)."""
        frames = np.asarray(frames)
        if not self.takes_frames:
            raise EdgebloodError(f"{self.artifact.name} takes framed float32 NCHW images at {self.input_size} px, not whole captures; "
                                 "frame them first (edgeblood predict does this) or use the capture variant (model-capture.onnx)")
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise EdgebloodError(f"{self.runtime}: expected uint8 captures shaped [N, H, W, 3] (RGB), got {frames.dtype} {frames.shape}")
        return np.asarray(self._run(np.ascontiguousarray(frames)), dtype=np.float32)

    def __repr__(self) -> str:
        return f"LoadedModel({self.runtime}/{self.device}, threads={self.threads}, {self.artifact.name})"


class Runtime(ABC):
    """An inference runtime: whether it is usable here, on which devices, and how to load an artifact."""

    name: str = ""
    extra: str = ""  # the pip extra that installs it
    suffixes: tuple[str, ...] = ()  # artifact file suffixes this runtime reads

    @abstractmethod
    def available(self) -> tuple[bool, str]:
        """(True, "") when usable here, else (False, reason a user can act on)."""

    @abstractmethod
    def devices(self) -> list[str]:
        """Device names accepted by ``load`` on this machine (empty when unavailable)."""

    @abstractmethod
    def _load(self, artifact: Path, device: str, threads: int | None) -> LoadedModel:
        """Runtime-specific loading; called by ``load`` after the common checks."""

    def load(self, artifact: str | os.PathLike, device: str = "cpu", threads: int | None = None) -> LoadedModel:
        ok, why = self.available()
        if not ok:
            raise EdgebloodError(f"{self.name} cannot run here: {why}")
        artifact = Path(artifact)
        if not artifact.exists():
            raise EdgebloodError(f"{artifact} does not exist; export it first with `edgeblood export RUN --target ...`")
        device = device.lower()
        devices = self.devices()
        if device not in devices:
            raise EdgebloodError(f"{self.name} has no device '{device}' here; choose one of: {', '.join(devices) or 'none'}")
        if threads is not None and threads < 1:
            raise EdgebloodError(f"threads must be >= 1 (got {threads})")
        try:
            return self._load(artifact, device, threads)
        except EdgebloodError:
            raise
        except Exception as exc:  # corrupt or foreign files: one line, not a runtime traceback
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise EdgebloodError(f"{self.name} could not load {artifact} ({type(exc).__name__}: {msg}); re-export it with `edgeblood export`") from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


_RUNTIMES: dict[str, type[Runtime]] = {}
_ALIASES = {"torch": "pytorch", "ort": "onnxruntime", "onnx": "onnxruntime", "ov": "openvino", "ct": "coreml", "coremltools": "coreml"}


def register_runtime(cls: type[Runtime]) -> type[Runtime]:
    """Class decorator: make a Runtime subclass available by its ``name``."""
    _RUNTIMES[cls.name] = cls
    return cls


def list_runtimes() -> list[str]:
    return list(_RUNTIMES)


def get_runtime(name: str) -> Runtime:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _RUNTIMES:
        raise EdgebloodError(f"unknown runtime '{name}'; choose one of: {', '.join(_RUNTIMES)}")
    return _RUNTIMES[key]()


def runtime_for_artifact(path: str | os.PathLike) -> Runtime:
    """The runtime that reads ``path``: .onnx, .xml (OpenVINO IR), .mlpackage/.mlmodel, a run dir or .pt."""
    path = Path(path)
    suffix = path.suffix.lower()
    for cls in _RUNTIMES.values():
        if suffix in cls.suffixes:
            return cls()
    if path.is_dir() and (path / "checkpoint.pt").is_file():
        return get_runtime("pytorch")
    known = sorted({s for c in _RUNTIMES.values() for s in c.suffixes if c is not PyTorchRuntime})
    raise EdgebloodError(f"unknown model format '{path.name}'; pass a file ending in {', '.join(known)}, or a run directory "
                         "(runs/<name>) for the PyTorch model - a .pt checkpoint is read from its run directory, not alone")


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _import_ok(module: str, extra: str, package: str | None = None) -> tuple[bool, str]:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        fix = f'pip install "edgeblood[{extra}]"' if extra else f"pip install {package or module}"
        return False, f"{package or module} is not installed; install it with: {fix}"
    return True, ""


# --------------------------------------------------------------------------------------------- PyTorch
@register_runtime
class PyTorchRuntime(Runtime):
    """PyTorch eager on a run directory (or its checkpoint.pt), wrapped with the deployment contract.

    ``threads`` calls ``torch.set_num_threads`` (process-wide: benchmark one configuration per process).
    """

    name = "pytorch"
    extra = ""
    suffixes = (".pt",)

    def available(self) -> tuple[bool, str]:
        return _import_ok("torch", "", "torch")

    def devices(self) -> list[str]:
        import torch

        devs = ["cpu"]
        if torch.cuda.is_available():
            devs.append("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            devs.append("mps")
        return devs

    def _load(self, artifact: Path, device: str, threads: int | None) -> LoadedModel:
        import torch

        from edgeblood.contract import artifact_metadata, decode_metadata
        from edgeblood.preprocess import wrap_run
        from edgeblood.runs import CHECKPOINT, open_run

        if artifact.is_file() and artifact.name != CHECKPOINT:
            raise EdgebloodError(f"{artifact}: a PyTorch checkpoint is read from its run directory (the folder `edgeblood train` wrote, "
                                 f"with {CHECKPOINT} and run.json), not as a loose file; pass that folder (runs/<name>) or an exported model")
        if threads is not None:
            torch.set_num_threads(threads)

        def load():
            run = open_run(artifact)
            return run, wrap_run(run, with_label=False).to(device)

        (run, module), seconds = _timed(load)

        @torch.inference_mode()
        def outputs(x: np.ndarray) -> tuple:
            out = module(torch.from_numpy(x).to(device))
            return out if isinstance(out, tuple) else (out,)  # (probabilities[, domain])

        def predict(x: np.ndarray) -> np.ndarray:
            return outputs(x)[0].float().cpu().numpy()

        def domain(x: np.ndarray) -> np.ndarray:
            return outputs(x)[1].float().cpu().numpy()

        meta = decode_metadata(artifact_metadata(run.meta, target="pytorch", run_name=run.name))
        return LoadedModel(
            runtime=self.name, device=device, threads=threads or torch.get_num_threads(), artifact=artifact,
            load_seconds=seconds, run=predict, metadata=meta, input_size=run.in_size, handle=module,
            domain_run=domain if module.domain is not None else None,
        )


# ---------------------------------------------------------------------------------------- ONNX Runtime
@register_runtime
class OnnxRuntime(Runtime):
    """ONNX Runtime; devices map to execution providers (cuda -> CUDA EP, coreml -> CoreML EP)."""

    name = "onnxruntime"
    extra = "onnx"
    suffixes = (".onnx",)
    _PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "coreml": "CoreMLExecutionProvider"}

    def available(self) -> tuple[bool, str]:
        return _import_ok("onnxruntime", "onnx")

    def devices(self) -> list[str]:
        if not self.available()[0]:
            return []
        import onnxruntime as ort

        have = set(ort.get_available_providers())
        return [dev for dev, prov in self._PROVIDERS.items() if prov in have]

    def _load(self, artifact: Path, device: str, threads: int | None) -> LoadedModel:
        import onnxruntime as ort

        from edgeblood.contract import DOMAIN_NAME, decode_metadata

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0  # 0 = onnxruntime's default (one per physical core)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        providers = [self._PROVIDERS[device]] + ([] if device == "cpu" else ["CPUExecutionProvider"])
        sess, seconds = _timed(lambda: ort.InferenceSession(str(artifact), sess_options=opts, providers=providers))
        inp = sess.get_inputs()[0]
        out_names = [o.name for o in sess.get_outputs()]
        prob = "probabilities" if "probabilities" in out_names else out_names[0]
        in_dtype = {"tensor(float16)": np.float16, "tensor(uint8)": np.uint8}.get(inp.type, np.float32)
        frames = in_dtype is np.uint8 and len(inp.shape) == 4 and inp.shape[-1] == 3  # a capture variant: NHWC frames
        size = inp.shape[-1] if isinstance(inp.shape[-1], int) and not frames else None

        def output(name: str) -> Callable[[np.ndarray], np.ndarray]:
            return lambda x: sess.run([name], {inp.name: x.astype(in_dtype, copy=False)})[0]

        meta = decode_metadata(dict(sess.get_modelmeta().custom_metadata_map))
        return LoadedModel(
            runtime=self.name, device=device, threads=threads, artifact=artifact,
            load_seconds=seconds, run=output(prob), metadata=meta, input_size=size, handle=sess, takes_frames=frames,
            domain_run=output(DOMAIN_NAME) if DOMAIN_NAME in out_names else None,
        )


# -------------------------------------------------------------------------------------------- OpenVINO
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
        return _import_ok("openvino", "openvino")

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

        (model, compiled), seconds = _timed(load)
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


def _named_output_call(compiled: Any, name: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """A reusable infer request returning the output called ``name``, None when the model has none."""
    port = next((p for p in compiled.outputs if name in p.get_names()), None)
    if port is None:
        return None
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x}, share_inputs=True)[port].copy()


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


def read_openvino_metadata(model: Any) -> dict[str, Any]:
    """The contract stored under rt_info['edgeblood'] of an ov.Model (empty when absent)."""
    from edgeblood.contract import decode_metadata

    if not model.has_rt_info(["edgeblood"]):
        return {}
    keys = model.get_rt_info(["edgeblood"]).astype(dict)
    return decode_metadata({str(k): model.get_rt_info(["edgeblood", str(k)]).astype(str) for k in keys})


# ------------------------------------------------------------------------------------------- Core ML
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
        ok, why = _import_ok("coremltools", "coreml")
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
        mlmodel, seconds = _timed(lambda: ct.models.MLModel(str(artifact), compute_units=units))
        spec = mlmodel.get_spec()
        input_name = spec.description.input[0].name
        prob_name = spec.description.predictedProbabilitiesName or "probabilities"
        meta = read_coreml_metadata(mlmodel)
        classes = list(meta.get("classes") or [])

        def predict(x: np.ndarray) -> np.ndarray:
            rows = []
            for img in np.clip(np.rint(x), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1):
                out = mlmodel.predict({input_name: Image.fromarray(img, "RGB")})
                probs = out[prob_name]
                if isinstance(probs, dict):  # classifier output: {label: probability}, ordered as the metadata's classes
                    rows.append([probs[c] for c in (classes or list(probs))])
                else:
                    rows.append(np.ravel(probs))
            return np.asarray(rows, dtype=np.float32)

        size = spec.description.input[0].type.imageType.width or None
        return LoadedModel(
            runtime=self.name, device=device, threads=None, artifact=artifact,
            load_seconds=seconds, run=predict, metadata=meta, input_size=size, handle=mlmodel,
        )


def read_coreml_metadata(mlmodel: Any) -> dict[str, Any]:
    """The contract stored in a Core ML model's user_defined_metadata."""
    from edgeblood.contract import decode_metadata

    return decode_metadata(dict(mlmodel.user_defined_metadata))


# -------------------------------------------------------------------------------------------- LiteRT
@register_runtime
class LiteRTRuntime(Runtime):
    """LiteRT (TensorFlow Lite) interpreter with its default XNNPACK delegate (ai-edge-litert).

    A .tflite artifact holds fixed-batch signatures (exporters/litert.py: batch 1 and 64). ``predict``
    runs whole chunks through the largest one and the rest image by image through batch 1; a benchmark
    times each batch on the signature of exactly that batch (``timed_call``), as an app would call it.
    """

    name = "litert"
    extra = "litert"
    suffixes = (".tflite",)

    def available(self) -> tuple[bool, str]:
        return _import_ok("ai_edge_litert", "litert", "ai-edge-litert")

    def devices(self) -> list[str]:
        return ["cpu"] if self.available()[0] else []

    def _load(self, artifact: Path, device: str, threads: int | None) -> LoadedModel:
        from ai_edge_litert.interpreter import Interpreter

        from edgeblood.contract import DOMAIN_NAME, INPUT_NAME, PROB_NAME
        from edgeblood.native_output import silenced

        @silenced()  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
        def load():
            interpreter = Interpreter(model_path=str(artifact), **({"num_threads": threads} if threads else {}))
            runners = {}
            for name in interpreter.get_signature_list():
                runner = interpreter.get_signature_runner(name)
                shape = runner.get_input_details()[INPUT_NAME]["shape"]
                runner(**{INPUT_NAME: np.zeros(shape, np.float32)})  # XNNPACK is applied at the first invoke: part of loading
                runners[int(shape[0])] = runner
            return interpreter, runners

        (interpreter, runners), seconds = _timed(load)
        if 1 not in runners:
            raise EdgebloodError(f"{artifact} has no batch-1 signature (found batches {sorted(runners)}); re-export it with `edgeblood export`")
        shape = runners[1].get_input_details()[INPUT_NAME]["shape"]

        calls = {batch: _signature_call(runner, INPUT_NAME, PROB_NAME) for batch, runner in runners.items()}
        predict = _fixed_batch_predict(calls)
        has_domain = DOMAIN_NAME in runners[1].get_output_details()
        domain = _fixed_batch_predict({b: _signature_call(r, INPUT_NAME, DOMAIN_NAME) for b, r in runners.items()}) if has_domain else None
        return LoadedModel(domain_run=domain,
            runtime=self.name, device=device, threads=threads, artifact=artifact, load_seconds=seconds, run=predict,
            metadata=read_litert_metadata(artifact), input_size=int(shape[2]) if len(shape) == 4 else None, handle=interpreter,
            fixed_batch_call=calls.get,
        )


def _signature_call(runner: Any, input_name: str, output_name: str) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: runner(**{input_name: x})[output_name]


def _fixed_batch_predict(calls: dict[int, Callable[[np.ndarray], np.ndarray]]) -> Callable[[np.ndarray], np.ndarray]:
    """Any number of images through fixed-batch entry points: whole chunks of the largest batch, the rest one by one."""
    largest = max(calls)

    def predict(x: np.ndarray) -> np.ndarray:
        out, i = [], 0
        while largest > 1 and len(x) - i >= largest:
            out.append(calls[largest](x[i : i + largest]))
            i += largest
        out += [calls[1](x[j : j + 1]) for j in range(i, len(x))]
        return np.concatenate(out)

    return predict


def read_litert_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The contract stored in a .tflite file's ``Model.metadata`` entry ``edgeblood`` (empty when absent).

    Read with ai-edge-litert's generated flatbuffer schema only. A buffer may live after the
    flatbuffer itself (offset/size; ai-edge-quantizer writes them so) or inside it.
    """
    import json

    from ai_edge_litert import schema_py_generated as schema

    from edgeblood.contract import decode_metadata

    data = Path(path).read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() != "edgeblood":
            continue
        buffer = model.Buffers(entry.Buffer())
        raw = data[buffer.Offset() : buffer.Offset() + buffer.Size()] if buffer.Offset() > 1 else buffer.DataAsNumpy().tobytes()
        return decode_metadata(json.loads(raw.decode("utf-8")))
    return {}


# ---------------------------------------------------------------------------------------- ExecuTorch
@register_runtime
class ExecuTorchRuntime(Runtime):
    """ExecuTorch's Python runtime on a .pte program whose graph is delegated to XNNPACK.

    ``threads`` resets XNNPACK's thread pool (process-wide, through the pybindings' underscore API
    ``_unsafe_reset_threadpool``: the only handle the Python runtime has; benchmark one setting per
    process). The runtime hands tensors over as torch tensors, so torch is loaded in the process.
    """

    name = "executorch"
    extra = "executorch"
    suffixes = (".pte",)

    def available(self) -> tuple[bool, str]:
        return _import_ok("executorch", "executorch")

    def devices(self) -> list[str]:
        return ["cpu"] if self.available()[0] else []

    def _load(self, artifact: Path, device: str, threads: int | None) -> LoadedModel:
        import torch

        from edgeblood.native_output import silenced

        with silenced():  # CPU-probe lines ("[cpuinfo_utils.cpp:87] Failed to open midr file") at first use
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
            from executorch.runtime import Runtime as ProgramRuntime

            if threads is not None:
                _unsafe_reset_threadpool(threads)

        @silenced()
        def load():
            program = ProgramRuntime.get().load_program(str(artifact))
            return program, [program.load_method(n) for n in sorted(program.method_names) if n.startswith("forward")]

        (program, methods), seconds = _timed(load)

        def call(method: Any, index: int = 0) -> Callable[[np.ndarray], np.ndarray]:
            return lambda x: method.execute([torch.from_numpy(x)])[index].numpy()

        calls = {int(m.metadata.input_tensor_meta(0).sizes()[0]): call(m) for m in methods}  # the batch each method was exported for
        if 1 not in calls:
            raise EdgebloodError(f"{artifact} has no batch-1 forward method (found batches {sorted(calls)}); re-export it with `edgeblood export`")
        predict = _fixed_batch_predict(calls)
        meta = read_executorch_metadata(program)
        size = int(meta["input_size"]) if str(meta.get("input_size", "")).isdigit() else None
        outputs = list(meta.get("outputs") or [])
        domain = None
        if "domain" in outputs:  # (probabilities, label, domain): the index the contract lists it at
            domain = _fixed_batch_predict({int(m.metadata.input_tensor_meta(0).sizes()[0]): call(m, outputs.index("domain")) for m in methods})
        return LoadedModel(domain_run=domain,
            runtime=self.name, device=device, threads=threads, artifact=artifact, load_seconds=seconds, run=predict,
            metadata=meta, input_size=size, handle=program, fixed_batch_call=calls.get,
        )


def read_executorch_metadata(program: Any) -> dict[str, Any]:
    """The contract stored as the constant method ``edgeblood_metadata`` (a JSON string) of a .pte program."""
    import json

    from edgeblood.contract import decode_metadata

    if "edgeblood_metadata" not in program.method_names:
        return {}
    (value,) = program.load_method("edgeblood_metadata").execute([])
    return decode_metadata(json.loads(value if isinstance(value, str) else bytes(value.numpy()).decode("utf-8")))

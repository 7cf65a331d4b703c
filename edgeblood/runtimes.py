"""One small interface over every inference runtime: load an artifact, predict probabilities.

    rt = runtime_for_artifact("runs/x/export/model.onnx")      # or get_runtime("openvino")
    ok, why = rt.available()                                   # (False, 'pip install "edgeblood[openvino]"')
    m = rt.load(path, device="cpu", threads=1)
    probs = m.predict(images)        # float32 NCHW RGB 0-255 (the deployment contract) -> [N, C]

This module is the registry and the interface (``Runtime``, ``LoadedModel``); the adapters live with
their format: ``edgeblood.exporters.<format>.runtime`` beside the exporter, the metadata reader and the
quantizers of that format, and PyTorch's in ``edgeblood.pytorch_runtime``. They are imported by name on
first use (as ``edgeblood.targets`` imports target modules), so this module needs none of them and
listing runtimes costs a few small imports. Adding a runtime is one ``Runtime`` subclass decorated with
``@register_runtime`` plus its module name in ``BUILTIN_MODULES`` (or an import of it by a plugin).
Adapters import their library inside functions, so a missing one is a reason string, never an ImportError.

It lives in the core of the package, not in ``edgeblood.bench``, because every consumer of an
artifact runs it through this interface: ``predict`` (edgeblood.inference), ``compress`` (calibration and the
measured rows), the exporters' parity check and the benchmark itself.
"""

from __future__ import annotations

import importlib
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeblood.errors import EdgebloodError

# In listing order (bench plans its rows in this order); each module registers its adapter when imported.
BUILTIN_MODULES = (
    "edgeblood.pytorch_runtime",
    "edgeblood.exporters.onnx.runtime",
    "edgeblood.exporters.openvino.runtime",
    "edgeblood.exporters.coreml.runtime",
    "edgeblood.exporters.litert.runtime",
    "edgeblood.exporters.executorch.runtime",
)
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
        joint_run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
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
        self._joint_run = joint_run if domain_run is not None else None  # (probabilities, domain) of one call
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

    def predict_with_domain(self, images: np.ndarray, chunk: int = DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities [N, C] and the ``domain`` output [N, 2] of the same images. Where the runtime can fetch
        both outputs of one call (PyTorch, ONNX Runtime, OpenVINO, LiteRT, ExecuTorch) the graph runs once, not twice:
        predict with its check would otherwise cost two inferences per image. Elsewhere (Core ML, untested off macOS)
        it is ``predict`` then ``domain``."""
        if self._joint_run is None:
            return self.predict(images, chunk), self.domain(images, chunk)
        images = self._checked(images)
        parts = [self._joint_run(images[i : i + chunk]) for i in range(0, len(images), chunk)]
        return (np.concatenate([np.asarray(p, dtype=np.float32) for p, _ in parts]),
                np.concatenate([np.asarray(d, dtype=np.float32) for _, d in parts]))

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
_LOADED = False
_ALIASES = {"torch": "pytorch", "ort": "onnxruntime", "onnx": "onnxruntime", "ov": "openvino", "ct": "coreml", "coremltools": "coreml"}


def register_runtime(cls: type[Runtime]) -> type[Runtime]:
    """Class decorator: make a Runtime subclass available by its ``name``."""
    _RUNTIMES[cls.name] = cls
    return cls


def _load() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def list_runtimes() -> list[str]:
    """Runtime names in BUILTIN_MODULES order (then any others), whichever adapter happened to be imported first:
    bench plans its rows from this list, so its order must not depend on import order."""
    _load()
    rank = {module: i for i, module in enumerate(BUILTIN_MODULES)}
    return sorted(_RUNTIMES, key=lambda name: rank.get(_RUNTIMES[name].__module__, len(rank)))


def get_runtime(name: str) -> Runtime:
    _load()
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _RUNTIMES:
        raise EdgebloodError(f"unknown runtime '{name}'; choose one of: {', '.join(_RUNTIMES)}")
    return _RUNTIMES[key]()


def runtime_for_artifact(path: str | os.PathLike) -> Runtime:
    """The runtime that reads ``path``: .onnx, .xml (OpenVINO IR), .mlpackage/.mlmodel, a run dir or .pt."""
    _load()
    path = Path(path)
    suffix = path.suffix.lower()
    for cls in _RUNTIMES.values():
        if suffix in cls.suffixes:
            return cls()
    if path.is_dir() and (path / "checkpoint.pt").is_file():
        return get_runtime("pytorch")
    known = sorted({s for c in _RUNTIMES.values() for s in c.suffixes if c.name != "pytorch"})
    raise EdgebloodError(f"unknown model format '{path.name}'; pass a file ending in {', '.join(known)}, or a run directory "
                         "(runs/<name>) for the PyTorch model - a .pt checkpoint is read from its run directory, not alone")


# ------------------------------------------------------------------------- shared by the adapters
def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(what ``fn()`` returns, the seconds it took): an adapter's load time."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def import_ok(module: str, extra: str, package: str | None = None) -> tuple[bool, str]:
    """``Runtime.available()`` for a library: (True, "") when ``module`` is installed, else the pip command."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        fix = f'pip install "edgeblood[{extra}]"' if extra else f"pip install {package or module}"
        return False, f"{package or module} is not installed; install it with: {fix}"
    return True, ""


def fixed_batch_predict(calls: dict[int, Callable[[np.ndarray], Any]]) -> Callable[[np.ndarray], Any]:
    """Any number of images through fixed-batch entry points: whole chunks of the largest batch, the rest one by one.
    An entry point returning a tuple of outputs (a joint_run) gives the tuple of their concatenations."""
    largest = max(calls)

    def predict(x: np.ndarray) -> Any:
        out, i = [], 0
        while largest > 1 and len(x) - i >= largest:
            out.append(calls[largest](x[i : i + largest]))
            i += largest
        out += [calls[1](x[j : j + 1]) for j in range(i, len(x))]
        if isinstance(out[0], tuple):
            return tuple(np.concatenate(parts) for parts in zip(*out))
        return np.concatenate(out)

    return predict

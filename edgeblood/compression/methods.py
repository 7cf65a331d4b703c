"""Quantization methods: one registered entry each, one signature, read by ``edgeblood compress``.

A method belongs to one export target and one ``--quantize`` choice (int8 or fp16). It says which
artifacts it will make for the given options (``variants``: one ONNX static variant per calibration
method, one Core ML variant per palette size, ...) and makes one of them from the target's fp32
artifact (``make``: a :class:`QuantizeJob` in, the manifest's ``compression`` details out). Compress
only chooses entries, calls ``make`` and measures what it wrote; it knows no method by name.

Methods register from the module that implements them, ``edgeblood.exporters.<format>.quantize``
(beside the format's exporter, runtime adapter and metadata), imported by name on first use as
``edgeblood.targets`` imports target modules. fp16 for a target whose
exporter writes fp16 (OpenVINO, Core ML) needs no method: :func:`variants_for` adds it from the
target record, and compress re-uses the exporter for it.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BUILTIN_MODULES = (
    "edgeblood.exporters.onnx.quantize",
    "edgeblood.exporters.openvino.quantize",
    "edgeblood.exporters.coreml.quantize",
    "edgeblood.exporters.litert.quantize",
    "edgeblood.exporters.executorch.quantize",
)
QUANTIZE_CHOICES = ("int8", "fp16")


@dataclass(frozen=True)
class QuantizeJob:
    """Everything a method may read: where from, where to, the calibration data and the user's options."""

    source: Path  # the target's fp32 artifact
    dest: Path
    calibration: np.ndarray | None  # float32 NCHW 0-255 train images, stratified by class (int8 methods)
    calibration_info: dict  # how they were chosen (recorded in the manifest)
    validation: tuple[np.ndarray, np.ndarray] | None  # val images + labels, for methods that bound an accuracy drop
    options: Any  # edgeblood.compression.compress_run.CompressOptions
    params: dict = field(default_factory=dict)  # what tells this variant apart (calibration method, palette bits)
    run: Any = None  # the run (edgeblood.runs.Run): for methods that quantize the PyTorch model itself (PT2E) and for metadata


@dataclass(frozen=True, eq=False)
class Variant:
    """One artifact compress will make: its table label, precision, path inside export/ and manifest tag."""

    method: QuantizeMethod | None  # None: made by the target's exporter (fp16 exports)
    label: str
    target: str
    precision: str
    path: str
    tag: str = ""  # manifest "variant": what tells it apart from other artifacts of the same precision (bench labels)
    params: dict = field(default_factory=dict)

    @property
    def via_exporter(self) -> bool:
        return self.method is None


@dataclass(frozen=True, eq=False)
class QuantizeMethod:
    name: str  # e.g. "onnxruntime-static"
    target: str  # the export target whose fp32 artifact it starts from
    quantize: str  # the --quantize choice that selects it
    variants: Callable[[Any], list[Variant]]  # options -> the artifacts it makes (method=None; filled in by variants_for)
    make: Callable[[QuantizeJob], dict]  # writes job.dest; returns the manifest's compression details
    libraries: tuple[tuple[str, str, str], ...] = ()  # (module, pip package, extra) it needs
    bounds_accuracy_drop: bool = False  # honours --max-drop
    description: str = ""


_METHODS: dict[str, QuantizeMethod] = {}
_LOADED = False


def register(method: QuantizeMethod) -> QuantizeMethod:
    _METHODS[method.name] = method
    return method


def all_methods() -> list[QuantizeMethod]:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
    return list(_METHODS.values())


def variants_for(target, options) -> list[Variant]:
    """Every artifact ``options`` asks for on ``target`` (a Target record), in table order."""
    out: list[Variant] = []
    for choice in (c for c in QUANTIZE_CHOICES if c in options.quantize):
        if choice == "fp16" and "fp16" in target.artifacts:
            out.append(Variant(None, "fp16", target.name, "fp16", target.artifacts["fp16"]))
            continue
        for method in all_methods():
            if method.target == target.name and method.quantize == choice:
                out += [Variant(method, v.label, v.target, v.precision, v.path, v.tag, v.params) for v in method.variants(options)]
    return out


def accuracy_control_record(max_drop: float, n_images: int, fp32_accuracy: float, int8_accuracy: float) -> dict:
    """The manifest's ``accuracy_control`` record of a --max-drop check before any fallback (one schema for every method)."""
    drop = round(100 * (fp32_accuracy - int8_accuracy), 3)
    return {"max_drop_pt": float(max_drop), "split": "val", "images": int(n_images), "val_accuracy_fp32": fp32_accuracy,
            "val_accuracy_int8_all_layers": int8_accuracy, "drop_pt_all_layers": drop,
            "fell_back": False, "val_accuracy_int8": int8_accuracy, "drop_pt": drop, "met": drop <= max_drop, "float_nodes": []}


def timed(fn: Callable, *args, details: dict) -> dict:
    """Run one compression step; its manifest details, with the time it took and, when the step returns
    a dict, what it reports about itself (e.g. the graph rewrites of quantize_static)."""
    t0 = time.perf_counter()
    result = fn(*args)
    return {"seconds": round(time.perf_counter() - t0, 3), **details, **(result if isinstance(result, dict) else {})}

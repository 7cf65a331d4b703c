"""Export targets: one ``Target`` record per format, registered by the module that implements it.

Everything that needs to know about a target reads this registry and nothing else: ``edgeblood
export`` (what to make, in which order, how to check it), ``edgeblood compress`` (the fp32 artifact a
quantizer starts from), ``edgeblood bench`` (which export command makes the artifact a runtime
reads), the CLI's choices and the tests. Adding a target is one package in ``exporters/`` whose
``export`` module calls :func:`register` (beside its ``runtime``, ``metadata`` and ``quantize``
modules), plus its tests; this file only learns the module's name.

The registry is the interface and lives in the core of the package; the implementations live in
``edgeblood.exporters`` and are imported by name on first use (as a plugin would be), so the layers
that only need the declarative part (bench, the CLI) do not depend on the exporters' code. Target
modules keep their heavy imports (torch, the converters) inside functions: loading the registry
costs milliseconds. Third-party targets register through the ``edgeblood.targets`` entry-point group.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeblood.errors import EdgebloodError

BUILTIN_MODULES = (
    "edgeblood.exporters.onnx.export",
    "edgeblood.exporters.openvino.export",
    "edgeblood.exporters.coreml.export",
    "edgeblood.exporters.litert.export",
    "edgeblood.exporters.executorch.export",
)
ENTRY_POINT_GROUP = "edgeblood.targets"


@dataclass(frozen=True)
class ExportOptions:
    """The knobs of ``edgeblood export`` that some targets read (each target ignores the others)."""

    opset: int | None = None
    simplify: bool | str = "auto"
    min_target: str = "iOS16"


@dataclass
class ExportJob:
    """One artifact to make: the run, the precision, where to write it, and what was made before it.

    ``sources`` holds the fp32 artifacts of other targets already made in this export, by target name
    (OpenVINO converts the ONNX graph rather than re-tracing the model).
    """

    run: Any  # edgeblood.runs.Run
    precision: str
    out: Path
    metadata: dict[str, str]
    options: ExportOptions = field(default_factory=ExportOptions)
    sources: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class CaptureVariant:
    """The whole-capture variant of a target's fp32 artifact (framing inside the graph)."""

    path: str
    build: Callable[[ExportJob, Path], dict]  # (job with out = staged path, the target's fp32 artifact) -> details incl. "input"


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one record per registered target
class Target:
    """Everything edgeblood knows about one export format."""

    name: str  # what --target takes
    title: str  # what tables print
    runtime: str  # the edgeblood.runtimes adapter that reads its artifacts (edgeblood.exporters.<format>.runtime)
    extra: str  # the pip extra that installs its converter
    libraries: tuple[str, ...]  # modules the converter needs (checked before any work)
    artifacts: Mapping[str, str]  # precision -> path inside export/, for the precisions `edgeblood export` makes
    outputs: tuple[str, ...]
    export: Callable[[ExportJob], dict]  # writes job.out, returns details for the manifest
    input_contract: Callable[[int], dict]  # model input size -> the manifest's "input" entry
    order: int  # export order (a target that converts another one's artifact comes after it)
    source: str | None = None  # the target whose fp32 artifact this one converts (made first when not requested)
    validate: Callable[[Path, Any], None] | None = None  # spec check before the numeric one; raises EdgebloodError
    check_options: Callable[[ExportOptions], None] | None = None  # refuses bad options before any work
    capture: CaptureVariant | None = None
    description: str = ""  # one line for --help and the README

    @property
    def fp32_path(self) -> str:
        return self.artifacts["fp32"]

    def require(self) -> None:
        """Fail before any work when the converter is missing, naming the extra that installs it."""
        from edgeblood.errors import require_modules

        require_modules((module, module, self.extra) for module in self.libraries)


_REGISTRY: dict[str, Target] = {}
_LOADED = False


def register(target: Target) -> Target:
    """Add ``target`` to the registry (called at import time by the module that implements it)."""
    existing = _REGISTRY.get(target.name)
    if existing is not None and existing.export is not target.export:
        raise EdgebloodError(f"two export targets are called '{target.name}'; rename one of them")
    _REGISTRY[target.name] = target
    return target


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    if os.environ.get("EDGEBLOOD_NO_PLUGINS") != "1":
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            ep.load()


def all_targets() -> list[Target]:
    """Every registered target, in export order."""
    _load()
    return sorted(_REGISTRY.values(), key=lambda t: (t.order, t.name))


def target_names() -> tuple[str, ...]:
    return tuple(t.name for t in all_targets())


def choices_text(extra: Sequence[str] = ("all",)) -> str:
    """"onnx, openvino, coreml or all": the target names for help texts and error messages."""
    names = [*target_names(), *extra]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def get_target(name: str) -> Target:
    _load()
    target = _REGISTRY.get(name.lower())
    if target is None:
        raise EdgebloodError(f"unknown target '{name}'; choose {choices_text()}")
    return target


def parse_targets(names: Sequence[str]) -> list[Target]:
    """``["onnx", "all"]`` -> the Target records, unique, in export order; unknown names fail with the choices."""
    wanted = [n.strip().lower() for n in names if n and n.strip()]
    if "all" in wanted:
        return all_targets()
    picked = {get_target(n).name: get_target(n) for n in wanted}
    return sorted(picked.values(), key=lambda t: (t.order, t.name))


def target_for_runtime(runtime: str) -> Target | None:
    """The target whose artifacts ``runtime`` reads (bench's hint for an artifact that is missing)."""
    return next((t for t in all_targets() if t.runtime == runtime), None)

"""The import layering of edgeblood: arrows run from the top floors down, never up (issues #15, #27).

Floors, bottom to top (an import may point to its own layer or to a lower floor; the layers that share a
floor never import each other):

    0  core         the top-level ``edgeblood/*.py`` modules (the run/artifact contract, parity, predict's
                    engine, the registries of targets and runtimes, PyTorch's runtime adapter),
                    ``edgeblood.config``, ``.data``, ``.domain``, ``.models``
    1  adapters     each format's runtime adapter and metadata reader/writer
                    (``edgeblood.exporters.<format>.runtime`` / ``.metadata``) and the package ``__init__``
                    files above them, which run whenever an adapter loads
    2  evaluation
    3  training | exporters | bench    three rooms, none imports another; ``exporters`` is each format's
                    ``export`` (and ``capture``) module plus run_export, model_card and the shared capture code
    4  compression  the compress pipeline and each format's quantizers (``edgeblood.exporters.<format>.quantize``)
    5  api          the Python API
    6  cli

One format lives in one folder (``exporters/<format>/``) yet spans floors 1, 3 and 4, each module at the
floor of what it needs: predict, parity and bench run artifacts through ``edgeblood.runtimes``, so an
adapter may import core and nothing above it (loading a runtime never loads an exporter, a quantizer or
torch); an exporter wraps the run's model; a quantizer starts from its format's exporter and registers
with ``edgeblood.compression.methods``.

The registries in core (``edgeblood.targets``, ``edgeblood.runtimes``) and ``compression.methods`` import
their implementations by name on first use (``importlib``, as a plugin is loaded): the registry holds the
module's name, not an import of its code, so that is no arrow here; :func:`test_registries_name_modules_on_their_floor`
checks those names instead. The check parses every source file with ``ast`` and looks at every ``import`` /
``from ... import`` node, including the lazy ones inside functions, so a deferred import cannot hide an
upward arrow; :func:`test_no_import_cycles` keeps the module graph free of cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Repository folder -> installed package name (pyproject.toml's package-dir mapping).
PACKAGE_DIRS = {"edgeblood": "edgeblood", "exporters": "edgeblood.exporters", "bench": "edgeblood.bench"}

FLOORS = {"core": 0, "adapters": 1, "evaluation": 2, "training": 3, "exporters": 3, "bench": 3, "compression": 4, "api": 5, "cli": 6}
# The modules of a format package (exporters/<format>/) by floor; any other module there is an exporter.
FORMAT_MODULES = {"runtime": "adapters", "metadata": "adapters", "quantize": "compression"}
FORMATS = frozenset(p.parent.name for p in (ROOT / "exporters").glob("*/__init__.py"))

# (importing module, imported module) pairs let through on purpose, each with its reason. Every upward
# arrow found when this test was written was removed by moving the shared code down; the one left is the
# front door: the package's ``__getattr__`` hands out the Python API (edgeblood.api, a floor near the CLI)
# on first use, so ``edgeblood.train`` works while ``import edgeblood`` stays torch-free.
ALLOWED: dict[tuple[str, str], str] = {
    ("edgeblood", "edgeblood.api"): "lazy re-export of the public API in edgeblood/__init__.py's __getattr__",
}

# Imports that close a cycle, kept on purpose, each with its reason (test_no_import_cycles leaves these
# arrows out of the graph and fails on any cycle left).
CYCLE_EDGES: dict[tuple[str, str], str] = {
    ("edgeblood.models.registry", "edgeblood.models"):
        "create()/list_models() import the package so every family module (each imports the registry to register) is loaded",
    ("edgeblood.bench.report", "edgeblood.bench.report_html"):
        "report.html_report imports the renderer lazily so callers ask one module; the renderer reads report's helpers",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = list(rel.with_suffix("").parts)
    parts[0] = PACKAGE_DIRS[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> list[Path]:
    return sorted(p for folder in PACKAGE_DIRS for p in (ROOT / folder).rglob("*.py"))


def _layer(name: str) -> str | None:
    """The layer of a module, or of a name imported from one; None outside edgeblood and for ``__main__``."""
    parts = name.split(".")
    if parts[0] != "edgeblood":
        return None
    if len(parts) == 1:
        return "core"
    top = parts[1]
    if top == "__main__":
        return None
    if top == "exporters":
        if len(parts) == 2 or (parts[2] in FORMATS and len(parts) == 3):
            return "adapters"  # package __init__ files: they run before any adapter below them
        if parts[2] in FORMATS:
            return FORMAT_MODULES.get(parts[3], "exporters")
        return "exporters"
    return top if top in FLOORS else "core"  # top-level modules, config, data, domain, models


def _forbidden(importer: str, imported: str) -> bool:
    """An arrow up a floor, or across to another layer on the same floor."""
    a, b = _layer(importer), _layer(imported)
    if a is None or b is None or a == b:
        return False
    return FLOORS[b] >= FLOORS[a]


def _imports(path: Path, module: str):
    """(line, imported module) for every import in the file, relative ones resolved against ``module``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # "from edgeblood import compression" imports a subpackage: check each name as a module too.
            yield node.lineno, target
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations() -> list[str]:
    found = []
    for path in _sources():
        module = _module_name(path)
        seen = set()
        for line, name in sorted(_imports(path, module)):
            if not _forbidden(module, name) or (line, _layer(name)) in seen:
                continue
            if any(mod == module and _inside(name, imp) for mod, imp in ALLOWED):
                continue
            seen.add((line, _layer(name)))
            found.append(f"{path.relative_to(ROOT)}:{line}: {module} ({_layer(module)}) imports {name} ({_layer(name)})")
    return found


def _module_graph() -> dict[str, set[str]]:
    """Module -> the edgeblood modules it imports, lazy imports included. ``from package import module``
    points at the module (the package's ``__init__`` runs first, but it is not what the file depends on)."""
    modules = {_module_name(p): p for p in _sources()}

    def known(name: str) -> str | None:
        parts = name.split(".")
        return next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in modules), None)

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        deps: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                deps.update(known(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)] if node.level else []
                source = ".".join(base + ([node.module] if node.module else []))
                deps.update(f"{source}.{a.name}" if f"{source}.{a.name}" in modules else known(source) for a in node.names)
        graph[module] = {d for d in deps if d is not None and d != module and (module, d) not in CYCLE_EDGES and not any(
            mod == module and _inside(d, imp) for mod, imp in ALLOWED)}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def test_sources_found():
    names = {_module_name(p) for p in _sources()}
    assert {"edgeblood.runs", "edgeblood.exporters.onnx.export", "edgeblood.exporters.onnx.runtime", "edgeblood.bench.runner",
            "edgeblood.evaluation.evaluate"} <= names
    assert {"onnx", "openvino", "coreml", "litert", "executorch"} <= FORMATS


@pytest.mark.parametrize("module, path, layer", [
    ("edgeblood.runs", ROOT / "edgeblood" / "runs.py", "core"),
    ("edgeblood", ROOT / "edgeblood" / "__init__.py", "core"),
    ("edgeblood.__main__", ROOT / "edgeblood" / "__main__.py", None),
    ("edgeblood.models.registry", ROOT / "edgeblood" / "models" / "registry.py", "core"),
    ("edgeblood.runtimes", ROOT / "edgeblood" / "runtimes.py", "core"),
    ("edgeblood.pytorch_runtime", ROOT / "edgeblood" / "pytorch_runtime.py", "core"),
    ("edgeblood.bench.runner", ROOT / "bench" / "runner.py", "bench"),
    ("edgeblood.exporters", ROOT / "exporters" / "__init__.py", "adapters"),
    ("edgeblood.exporters.onnx", ROOT / "exporters" / "onnx" / "__init__.py", "adapters"),
    ("edgeblood.exporters.onnx.runtime", ROOT / "exporters" / "onnx" / "runtime.py", "adapters"),
    ("edgeblood.exporters.litert.metadata", ROOT / "exporters" / "litert" / "metadata.py", "adapters"),
    ("edgeblood.exporters.onnx.export", ROOT / "exporters" / "onnx" / "export.py", "exporters"),
    ("edgeblood.exporters.openvino.capture", ROOT / "exporters" / "openvino" / "capture.py", "exporters"),
    ("edgeblood.exporters.run_export", ROOT / "exporters" / "run_export.py", "exporters"),
    ("edgeblood.exporters.coreml.quantize", ROOT / "exporters" / "coreml" / "quantize.py", "compression"),
    ("edgeblood.compression.methods", ROOT / "edgeblood" / "compression" / "methods.py", "compression"),
    ("edgeblood.cli.app", ROOT / "edgeblood" / "cli" / "app.py", "cli"),
])
def test_layer_of(module, path, layer):
    assert _module_name(path) == module
    assert _layer(module) == layer


def test_rules_at_the_granularity_of_a_format():
    assert _forbidden("edgeblood.exporters.onnx.runtime", "edgeblood.exporters.onnx.export.check_opset")  # adapter -> exporter: up
    assert _forbidden("edgeblood.exporters.onnx.export", "edgeblood.exporters.onnx.quantize")  # exporter -> quantizer: up
    assert _forbidden("edgeblood.runtimes", "edgeblood.exporters.onnx.runtime")  # core names adapters, never imports them
    assert _forbidden("edgeblood.bench.runner", "edgeblood.exporters.run_export")  # siblings on one floor
    assert not _forbidden("edgeblood.exporters.onnx.quantize", "edgeblood.exporters.onnx.export.names_read")
    assert not _forbidden("edgeblood.exporters.openvino.quantize", "edgeblood.exporters.openvino.runtime.probabilities_port")
    assert not _forbidden("edgeblood.bench.worker", "edgeblood.runtimes.get_runtime")
    assert not _forbidden("edgeblood.exporters.onnx.runtime", "edgeblood.exporters.onnx.metadata")


def test_imports_sees_lazy_and_relative(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text("import os\ndef f():\n    from edgeblood.bench import runtimes\n    from . import x\n")
    names = [name for _, name in _imports(src, "edgeblood.exporters.mod")]
    assert "edgeblood.bench.runtimes" in names and "edgeblood.exporters.x" in names and "os" in names


def test_no_upward_imports():
    found = violations()
    assert not found, "imports that run against the layering (move the shared code down instead):\n" + "\n".join(found)


def test_registries_name_modules_on_their_floor():
    """What the registries import by name: runtime adapters at most on the adapters floor (listing runtimes
    loads no exporter), targets from exporter modules, quantization methods from the compression floor."""
    from edgeblood import runtimes, targets
    from edgeblood.compression import methods

    assert {_layer(m) for m in runtimes.BUILTIN_MODULES} <= {"core", "adapters"}
    assert {_layer(m) for m in targets.BUILTIN_MODULES} == {"exporters"}
    assert {_layer(m) for m in methods.BUILTIN_MODULES} == {"compression"}
    for name in (*runtimes.BUILTIN_MODULES, *targets.BUILTIN_MODULES, *methods.BUILTIN_MODULES):
        assert name in {_module_name(p) for p in _sources()}, f"{name} is not a module of the repository"


def test_no_import_cycles():
    """runs -> manifest -> parity -> runtimes -> runs was one (issue #27); the status words now sit below manifest and parity."""
    graph = _module_graph()
    assert "edgeblood.parity" not in graph["edgeblood.manifest"]
    found = [sorted(c) for c in _cycles(graph)]
    assert not found, f"import cycles (lazy imports included; break them by moving the shared code down): {found}"


def test_cycle_finder_finds_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]

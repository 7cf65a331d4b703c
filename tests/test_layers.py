"""The import layering of edgeblood: arrows run from the top floors down, never up (issue #15).

Floors, bottom to top: core (the top-level ``edgeblood/*.py`` modules, ``edgeblood.data``, ``edgeblood.domain``,
``edgeblood.models``) -> ``evaluation`` -> ``training`` / ``compression`` / ``exporters`` / ``bench``
-> ``cli``. ``exporters`` and ``bench`` are siblings: both read the run/artifact contract and the
runtime adapters from core, and neither imports the other. The check parses every source file with
``ast`` and looks at every ``import`` / ``from ... import`` node, including the lazy ones inside
functions, so a deferred import cannot hide an upward arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Repository folder -> installed package name (pyproject.toml's package-dir mapping).
PACKAGE_DIRS = {"edgeblood": "edgeblood", "exporters": "edgeblood.exporters", "bench": "edgeblood.bench"}

# Rules: a module in the layer on the left imports none of the packages on the right.
UPPER = ("edgeblood.training", "edgeblood.evaluation", "edgeblood.compression", "edgeblood.exporters",
         "edgeblood.bench", "edgeblood.api", "edgeblood.cli")
FORBIDDEN = {
    "core": UPPER,
    "edgeblood.evaluation": ("edgeblood.training", "edgeblood.compression", "edgeblood.exporters", "edgeblood.bench",
                             "edgeblood.cli"),
    "edgeblood.exporters": ("edgeblood.bench", "edgeblood.compression", "edgeblood.cli"),
    "edgeblood.bench": ("edgeblood.exporters", "edgeblood.compression", "edgeblood.training", "edgeblood.cli"),
}

# (importing module, imported module) pairs let through on purpose, each with its reason. Every upward
# arrow found when this test was written was removed by moving the shared code down; the one left is the
# front door: the package's ``__getattr__`` hands out the Python API (edgeblood.api, the floor with the CLI)
# on first use, so ``edgeblood.train`` works while ``import edgeblood`` stays torch-free.
ALLOWED: dict[tuple[str, str], str] = {
    ("edgeblood", "edgeblood.api"): "lazy re-export of the public API in edgeblood/__init__.py's __getattr__",
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


def _layer(module: str, path: Path) -> str | None:
    """The layer a module belongs to, or None for modules no rule applies to (cli, training, compression, __main__)."""
    parts = module.split(".")
    if len(parts) == 1 or (len(parts) == 2 and path.parent == ROOT / "edgeblood" and path.name != "__init__.py"):
        return None if path.name == "__main__.py" else "core"
    if parts[1] in ("config", "data", "models", "domain"):
        return "core"
    top = ".".join(parts[:2])
    return top if top in FORBIDDEN else None


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
        layer = _layer(module, path)
        if layer is None:
            continue
        seen = set()
        for line, name in sorted(_imports(path, module)):
            for banned in FORBIDDEN[layer]:
                if _inside(name, banned) and not _inside(module, banned) and (line, banned) not in seen:
                    if any(mod == module and _inside(name, imp) for mod, imp in ALLOWED):
                        continue
                    seen.add((line, banned))
                    found.append(f"{path.relative_to(ROOT)}:{line}: {module} ({layer}) imports {name}")
    return found


def test_sources_found():
    names = {_module_name(p) for p in _sources()}
    assert {"edgeblood.runs", "edgeblood.exporters.onnx", "edgeblood.bench.runner", "edgeblood.evaluation.evaluate"} <= names


@pytest.mark.parametrize("module, path, layer", [
    ("edgeblood.runs", ROOT / "edgeblood" / "runs.py", "core"),
    ("edgeblood", ROOT / "edgeblood" / "__init__.py", "core"),
    ("edgeblood.__main__", ROOT / "edgeblood" / "__main__.py", None),
    ("edgeblood.models.registry", ROOT / "edgeblood" / "models" / "registry.py", "core"),
    ("edgeblood.bench.runner", ROOT / "bench" / "runner.py", "edgeblood.bench"),
    ("edgeblood.exporters", ROOT / "exporters" / "__init__.py", "edgeblood.exporters"),
    ("edgeblood.cli.app", ROOT / "edgeblood" / "cli" / "app.py", None),
])
def test_layer_of(module, path, layer):
    assert _module_name(path) == module
    assert _layer(module, path) == layer


def test_imports_sees_lazy_and_relative(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text("import os\ndef f():\n    from edgeblood.bench import runtimes\n    from . import x\n")
    names = [name for _, name in _imports(src, "edgeblood.exporters.mod")]
    assert "edgeblood.bench.runtimes" in names and "edgeblood.exporters.x" in names and "os" in names


def test_no_upward_imports():
    found = violations()
    assert not found, "imports that run against the layering (move the shared code down instead):\n" + "\n".join(found)

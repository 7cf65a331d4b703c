"""pyproject.toml's hand-written package list covers every package in the repository.

exporters/ and bench/ install as edgeblood.exporters / edgeblood.bench through setuptools'
package-dir mapping, so setuptools cannot discover packages itself; a subpackage missing from
``packages`` would be left out of the wheel while every test in the checkout still passes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_package_directory_is_listed():
    cfg = _setuptools()
    mapping = cfg["package-dir"]
    found = set()
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join((name, *rel.parts)))
    assert found == set(cfg["packages"])


def test_mapping_matches_the_layout():
    assert _setuptools()["package-dir"] == {"edgeblood": "edgeblood", "edgeblood.exporters": "exporters", "edgeblood.bench": "bench"}

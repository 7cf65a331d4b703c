"""Every data path in the tests goes through conftest's one resolver, which follows $EDGEBLOOD_DATA (issue #30).

A path written out in a test file (``../shared/data/pbc-originals/val``) made a real-data test skip on
any machine whose data lies elsewhere, although ``$EDGEBLOOD_DATA`` pointed at it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import SHARED_DATA, external_data_dir, pbc_originals_dir, real_data_dir, real_data_path

TESTS = Path(__file__).resolve().parent
#: Path components of the shared data folder: only conftest.py may spell them, and the resolver's callers name
#: what they ask it for (``external_data_dir("jtsc")``).
DATA_COMPONENTS = {"shared", "pbc-originals", "external", "jtsc", "jtsc-original"}
RESOLVERS = {"real_data_path", "pbc_originals_dir", "external_data_dir"}


def test_the_resolver_follows_edgeblood_data(tmp_path, monkeypatch):
    (tmp_path / "pbc-originals" / "val" / "basophil").mkdir(parents=True)
    (tmp_path / "external" / "jtsc").mkdir(parents=True)
    monkeypatch.setenv("EDGEBLOOD_DATA", str(tmp_path))
    assert pbc_originals_dir("val") == tmp_path / "pbc-originals" / "val"
    assert external_data_dir("jtsc") == tmp_path / "external" / "jtsc"
    assert pbc_originals_dir("test") == real_data_path("pbc-originals", "test")  # absent here: the next folder, or None
    assert real_data_dir() in (None, SHARED_DATA)  # no bloodmnist.npz under $EDGEBLOOD_DATA: not taken for the npz


def test_no_test_file_spells_a_data_path_itself():
    """String constants that name the data folder's parts appear in conftest.py only (docstrings aside)."""
    found = []
    for path in sorted(TESTS.glob("*.py")):
        if path.name in ("conftest.py", Path(__file__).name):
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        asked = {id(arg) for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", None) in RESOLVERS
                 for arg in node.args}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings | asked:
                text = node.value.strip("/")
                if text in DATA_COMPONENTS or text.startswith(("../shared", "shared/")):
                    found.append(f"{path.name}:{node.lineno}: {node.value!r}")
    assert not found, "data paths built outside conftest's resolver (use real_data_path / pbc_originals_dir / external_data_dir):\n" + "\n".join(found)

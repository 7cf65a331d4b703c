"""No function longer than 80 lines in the package (issue #27): a longer one does several jobs, and each
job wants a name, a docstring and a test of its own.

Counted from the first line of the body (the docstring when there is one) to its last line, blank lines
and comments in, for every function and method, nested ones included, in ``edgeblood/``, ``exporters/``
and ``bench/``. The signature is left out: a Typer command declares one parameter per CLI option, a
table rather than logic (``edgeblood train`` has over fifty), and elsewhere a signature is a few lines.
Parsed with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("edgeblood", "exporters", "bench")
MAX_LINES = 80


def long_functions(root: Path = ROOT, limit: int = MAX_LINES) -> list[str]:
    """``path:line name (N lines)`` for every function over ``limit`` lines."""
    found = []
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.body[0].lineno + 1
                    if lines > limit:
                        found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_over_80_lines():
    found = long_functions()
    assert not found, f"functions over {MAX_LINES} lines (split them by job):\n" + "\n".join(found)


def test_counts_the_body_from_its_first_line_to_its_last(tmp_path):
    pkg = tmp_path / "edgeblood"
    pkg.mkdir()
    body = '    """Docstring."""\n' + "".join(f"    x{i} = {i}\n" for i in range(80))
    options = "".join(f"    option{i}: int = 0,\n" for i in range(60))
    (pkg / "m.py").write_text(f"@staticmethod\ndef long():\n{body}\n\ndef command(\n{options}):\n    return 1\n")
    assert long_functions(tmp_path) == ["edgeblood/m.py:2 long (81 lines)"]
    assert long_functions(tmp_path, limit=81) == []

"""`--help` reads well at 80 columns, names what each command takes, and the LICENSE the README promises is there (#30 item 8)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgeblood.cli import app

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 80
COMMANDS = [[]] + [[name] for name in typer.main.get_command(app).commands] + [["report", "merge"]]


def _help(*command: str, width: int = WIDTH) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": str(width), "TERMINAL_WIDTH": str(width)})
    assert result.exit_code == 0, result.output
    return result.output


def _broken_lines(text: str) -> list[str]:
    """Line ends a wrap at WIDTH would not have made: the next line's first word would have fitted on this one.

    The description above the panels: prose lines (indent < 4) and example lines (indent >= 4), each example on
    a line of its own; the command list: the description column of the Commands panel.
    """
    desc = [ln.rstrip() for ln in text.split("╭", 1)[0].splitlines()]
    out = []
    for a, b in zip(desc, desc[1:]):
        if not a.strip() or not b.strip():
            continue
        ia, ib = len(a) - len(a.lstrip()), len(b) - len(b.lstrip())
        if ia >= 4 > ib:
            out.append(f"example wrapped: {a.strip()!r} / {b.strip()!r}")
        elif ia == ib < 4 and len(a) + 1 + len(b.split()[0]) <= WIDTH - 1:
            out.append(f"broken mid-sentence: {a.strip()!r} / {b.strip()!r}")
    panel = re.search(r"╭─ Commands ─+╮\n(.*?)╰", text, re.S)
    if panel:
        rows = [ln[1:-1] for ln in panel.group(1).splitlines()]
        col = min(m.start(1) for r in rows if (m := re.match(r" \S+\s+(\S)", r)))
        cells = [(r[:col].strip(), r[col:].rstrip()) for r in rows]
        width = max(len(t) for _, t in cells)
        out += [f"command list broken: {ta!r} / {tb!r}" for (_, ta), (nb, tb) in zip(cells, cells[1:])
                if not nb and tb and len(ta) + 1 + len(tb.split()[0]) <= width]
    return out


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "edgeblood")
def test_help_at_80_columns_breaks_lines_only_where_they_are_full(command):
    """Docstrings used to reach --help with their source line breaks: 'per-class sensitivity and' / 'specificity'."""
    problems = _broken_lines(_help(*command))
    assert not problems, f"edgeblood {' '.join(command)} --help at {WIDTH} columns:\n" + "\n".join(problems)


def test_help_examples_keep_their_indent():
    """A description of one prose paragraph plus examples used to lose the examples' indent (typer dedents them)."""
    text = _help("evaluate", width=120)
    assert "\n     edgeblood evaluate runs/se-cnn-28 --split test" in text


def test_predict_help_names_every_artifact_it_reads():
    text = " ".join(_help("predict", width=300).split())
    for name in ("model.onnx", "openvino/model.xml", "model.tflite", "model.pte", "model.mlpackage", "model-capture.onnx"):
        assert name in text, name


def test_the_license_is_the_apache_2_0_text_the_readme_names():
    license_file = ROOT / "LICENSE"
    assert license_file.is_file(), "README and pyproject say Apache-2.0, but there is no LICENSE file"
    # md5 of the canonical https://www.apache.org/licenses/LICENSE-2.0.txt
    assert hashlib.md5(license_file.read_bytes()).hexdigest() == "3b83ef96387f14655fc854ddc3c6bd57"
    assert "Code: Apache-2.0" in (ROOT / "README.md").read_text()
    assert 'license = { text = "Apache-2.0" }' in (ROOT / "pyproject.toml").read_text()

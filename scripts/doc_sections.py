"""Generated sections of the docs: the text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``.

The table scripts (results_table, external_table, calibration_table, finetune_table) write their
tables into docs/results.md (and the headline into README.md) through :func:`write_section`, so a
page's prose stays hand-written while its figures are regenerated. They import it as a sibling
module (each puts this folder on ``sys.path`` first, so the tests can load a script from its file too).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PAGE = ROOT / "docs" / "results.md"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the section ``name`` holding ``body``; a page without the markers is an error, not a silent no-op."""
    begin, end = markers(name)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise SystemExit(f"the page has no single '{begin}' ... '{end}' pair: add the markers where the table goes")
    head, rest = text.split(begin, 1)
    return head + begin + "\n" + body.strip("\n") + "\n" + end + rest.split(end, 1)[1]


def write_section(path: Path, name: str, body: str) -> None:
    path.write_text(replace_section(path.read_text(), name, body))
    print(f"wrote the {name} section of {path}")


# Absolute paths of the machine a table was made on; the docs show commands a reader can run anywhere.
_MACHINE_OPTION = re.compile(r"\s--(out|data-dir|out-dir)[ =]/\S+")
_ABSOLUTE = re.compile(r"(?<=[\s=])/(?:[^\s/]+/)*([^\s/]+/[^\s/]+)")


def portable_command(command: str) -> str:
    """A recorded command a reader can run anywhere: without the machine's own ``--out``/``--data-dir`` (the defaults
    and $EDGEBLOOD_DATA do their job), other absolute paths cut to their last two parts (``runs/NAME``, ``pbc-originals/val``)."""
    return _ABSOLUTE.sub(r"\1", _MACHINE_OPTION.sub("", command))

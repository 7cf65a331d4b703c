"""The CLI reference page (docs/cli.md), generated from the Typer app so it cannot drift from ``--help``.

    python scripts/cli_reference.py            # rewrite docs/cli.md
    python scripts/cli_reference.py --check    # exit 1 when docs/cli.md is not what the app says now

It walks ``typer.main.get_command(app)``: every command and sub-command, its docstring, its usage line
and one table row per argument and option, with the same option names, value types, help text and
defaults that ``--help`` prints (each parameter's own ``get_help_record``), but without the terminal's
wrapping, so the page is the same on every machine. tests/test_docs.py fails when the committed page is
stale: run this script after changing a command.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "cli.md"

HEADER = """# CLI reference

Every command and option of `edgeblood`, generated from the command line itself by
`python scripts/cli_reference.py` (a test fails when this page is out of date). The same text is in
`edgeblood COMMAND --help`. Wherever a run directory is accepted, the name of a pretrained model
(`edgeblood models` lists them) is accepted too.
"""


def _escape(text: str) -> str:
    """Markdown-safe prose: ``<name>`` and ``|`` outside code spans would become HTML tags and table cells."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # even pieces are outside backticks
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*").replace("_", "\\_")
    return "`".join(parts).replace("|", "\\|")


def _help_text(help_: str | None) -> list[str]:
    """A docstring as Markdown: prose paragraphs escaped, indented example lines as one bash block each."""
    out: list[str] = []
    for paragraph in (help_ or "").split("\n\n"):
        paragraph = paragraph.strip("\n")
        if not paragraph.strip():
            continue
        lines = paragraph.split("\n")
        if all(line.startswith("    ") for line in lines):
            out += ["```bash", *(line[4:] for line in lines), "```", ""]
        else:
            out += [_escape(" ".join(line.strip() for line in lines)), ""]
    return out


def _cell(text: str) -> str:
    return _escape(re.sub(r"\s+", " ", text.replace("\\[", "[")).strip())


def _summary(help_: str | None) -> str:
    """A command's first paragraph (click's short help stops at the first full stop, e.g. in "et al.")."""
    return (help_ or "").split("\n\n")[0]


def _command(cmd, ctx, path: list[str], level: int) -> list[str]:
    from typer import Context

    out = [f"{'#' * level} `{' '.join(path)}`", "", *_help_text(cmd.help)]
    sub_ctx = Context(cmd, info_name=path[-1], parent=ctx)
    pieces = " ".join(cmd.collect_usage_pieces(sub_ctx))
    out += ["```text", f"Usage: {' '.join(path)} {pieces}".rstrip(), "```", ""]
    rows = [rec for p in cmd.get_params(sub_ctx) if (rec := p.get_help_record(sub_ctx)) is not None]
    if rows:
        out += ["| argument / option | description |", "| --- | --- |"]
        out += [f"| `{name.replace('|', '&#124;')}` | {_cell(desc)} |" for name, desc in rows]
        out.append("")
    for name, sub in getattr(cmd, "commands", {}).items():
        if not sub.hidden:
            out += _command(sub, sub_ctx, [*path, name], level + 1)
    return out


def render() -> str:
    """The whole page, from the app as it is imported now."""
    import typer
    from typer import Context

    from edgeblood.cli import app

    root = typer.main.get_command(app)
    ctx = Context(root, info_name="edgeblood")
    out = [HEADER, "## `edgeblood`", "", *_help_text(root.help)]
    out += ["```text", f"Usage: edgeblood {' '.join(root.collect_usage_pieces(ctx))}", "```", ""]
    out += ["| command | what it does |", "| --- | --- |"]
    out += [f"| [`{name}`](#edgeblood-{name}) | {_cell(_summary(sub.help))} |" for name, sub in root.commands.items() if not sub.hidden]
    out.append("")
    for name, sub in root.commands.items():
        if not sub.hidden:
            out += _command(sub, ctx, ["edgeblood", name], 2)
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv[:1] == ["--check"]:
        if not PAGE.is_file() or PAGE.read_text() != text:
            print(f"{PAGE.relative_to(ROOT)} is out of date: run python scripts/cli_reference.py")
            return 1
        return 0
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(text)
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The Typer application object and the shared consoles (kept apart to avoid import cycles)."""

from __future__ import annotations

import inspect
import os
import sys

import typer
from rich.console import Console


def _no_type(ctx: object = None) -> None:
    return None


class _FlagHelp:
    """Help without a value type for on/off flags (typer >= 0.2x prints ``--download <bool>``, which reads as
    though ``--download true`` were accepted; click refuses it). Options that take a value keep their type."""

    def format_help(self, ctx, formatter) -> None:
        for param in self.get_params(ctx):
            if getattr(param, "is_flag", False):
                param.display_type_rich = _no_type  # per-instance: the shared option class is left alone
        super().format_help(ctx, formatter)


class FlagHelpCommand(_FlagHelp, typer.core.TyperCommand):
    pass


class FlagHelpGroup(_FlagHelp, typer.core.TyperGroup):
    pass


def flow_help(doc: str) -> str:
    """A command's docstring as ``--help`` should show it: each prose paragraph on one logical line (rich wraps
    it to the terminal), indented example lines kept one per line.

    In rich markup mode typer keeps every newline of a docstring, so a paragraph written over several
    source lines came out broken mid-sentence at 80 columns (issue #30), and in the command list too.
    """
    paragraphs = []
    for paragraph in inspect.cleandoc(doc).split("\n\n"):
        lines: list[str] = []
        for line in paragraph.split("\n"):
            if lines and not line.startswith(" ") and not lines[-1].startswith(" "):
                lines[-1] += " " + line.strip()  # the same sentence, continued on the next source line
            else:
                lines.append(line)  # the first line, or an example line (indented) and what follows it
        paragraphs.append("\n".join(lines))
    # typer dedents the paragraphs after the first with inspect.cleandoc, whose first line does not count: when
    # that line was the only unindented one, the examples lost their indent. A blank first line keeps it.
    return paragraphs[0] + ("\n\n\n" + "\n\n".join(paragraphs[1:]) if paragraphs[1:] else "")


class EdgebloodTyper(typer.Typer):
    """typer.Typer whose commands use :class:`FlagHelpCommand` unless told otherwise, with their docstrings
    reflowed for the terminal (:func:`flow_help`)."""

    def command(self, *args, cls: type | None = None, **kwargs):
        register = super().command(*args, cls=cls or FlagHelpCommand, **kwargs)

        def decorator(func):
            if kwargs.get("help") is None and func.__doc__:
                return super(EdgebloodTyper, self).command(*args, cls=cls or FlagHelpCommand, **kwargs, help=flow_help(func.__doc__))(func)
            return register(func)

        return decorator


app = EdgebloodTyper(
    name="edgeblood",
    cls=FlagHelpGroup,
    help="Blood-cell classification from training to an app on a device: train, compress, export, bench.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Piped or logged output (not a terminal, no COLUMNS) gets wide lines: rich's 80-column default cut
# figures and reasons mid-word ("+0.…", one word per line) in files and CI logs.
PIPE_WIDTH = 200


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    return Console(stderr=stderr, width=None if is_tty or os.environ.get("COLUMNS") else PIPE_WIDTH)


console = _console()
err_console = _console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from edgeblood import __version__

        typer.echo(f"edgeblood {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the edgeblood version and exit."),
) -> None:
    """Blood-cell classification from training to an app on a device.

    Typical path: `edgeblood train` -> `edgeblood export RUN --target all` -> `edgeblood compress RUN --quantize int8`
    -> `edgeblood bench RUN`. Every command works on a run directory (runs/<name>/).
    """

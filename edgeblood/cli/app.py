"""The Typer application object and the shared consoles (kept apart to avoid import cycles)."""

from __future__ import annotations

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


class EdgebloodTyper(typer.Typer):
    """typer.Typer whose commands use :class:`FlagHelpCommand` unless told otherwise."""

    def command(self, *args, cls: type | None = None, **kwargs):
        return super().command(*args, cls=cls or FlagHelpCommand, **kwargs)


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

"""The Typer application object and the shared consoles (kept apart to avoid import cycles)."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="edgeblood",
    help="Blood-cell classification from training to an app on a device: train, compress, export, bench.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)

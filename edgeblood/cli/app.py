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


@app.callback()
def _root() -> None:
    """Blood-cell classification from training to an app on a device.

    Typical path: `edgeblood train` -> `edgeblood export RUN --target all` -> `edgeblood compress RUN --quantize int8`
    -> `edgeblood bench RUN`. Every command works on a run directory (runs/<name>/).
    """

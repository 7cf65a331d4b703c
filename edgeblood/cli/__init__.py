"""The ``edgeblood`` command line: thin Typer commands over the library.

Each command lives in its own module and registers itself on ``app``. Heavy libraries (torch,
onnxruntime, openvino, coremltools) are imported inside the commands so ``--help`` stays instant.
"""

from __future__ import annotations

import sys

from edgeblood.cli.app import app, console, err_console
from edgeblood.errors import EdgebloodError

# Command modules (each adds its commands to ``app`` on import).
from edgeblood.cli import models as _models  # noqa: E402,F401
from edgeblood.cli import train as _train  # noqa: E402,F401
from edgeblood.cli import evaluate as _evaluate  # noqa: E402,F401
from edgeblood.cli import predict as _predict  # noqa: E402,F401

__all__ = ["app", "console", "main"]


def main() -> None:
    """Entry point: run the app; turn user-fixable errors into one red line and exit code 2."""
    try:
        app(standalone_mode=False)
    except EdgebloodError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            err_console.print("[yellow]aborted[/]")
            sys.exit(1)
        raise

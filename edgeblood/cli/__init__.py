"""The ``edgeblood`` command line: thin Typer commands over the library.

Each command lives in its own module and registers itself on ``app``. Heavy libraries (torch,
onnxruntime, openvino, coremltools) are imported inside the commands so ``--help`` stays instant.
"""

from __future__ import annotations

import signal
import sys

from rich.markup import escape

from edgeblood.cli.app import app, console, err_console
from edgeblood.errors import EdgebloodError

# Command modules (each adds its commands to ``app`` on import).
from edgeblood.cli import models as _models  # noqa: E402,F401
from edgeblood.cli import train as _train  # noqa: E402,F401
from edgeblood.cli import evaluate as _evaluate  # noqa: E402,F401
from edgeblood.cli import explain as _explain  # noqa: E402,F401
from edgeblood.cli import predict as _predict  # noqa: E402,F401
from edgeblood.cli import adapt as _adapt  # noqa: E402,F401
from edgeblood.cli import export as _export  # noqa: E402,F401
from edgeblood.cli import compress as _compress  # noqa: E402,F401
from edgeblood.cli import bench as _bench  # noqa: E402,F401
from edgeblood.cli import report as _report  # noqa: E402,F401
from edgeblood.cli import pipeline as _pipeline  # noqa: E402,F401

__all__ = ["app", "console", "main"]


def main() -> None:
    """Entry point: user-fixable errors become one red line and exit code 2 (usage errors: Typer's own message)."""
    interrupted = False

    def on_sigint(signum, frame):  # noqa: ARG001 - signal handler signature
        nonlocal interrupted
        interrupted = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        app()
    except SystemExit:  # click turns Ctrl-C into "Aborted!" + exit 1; shells expect 130 (128 + SIGINT)
        if interrupted:
            sys.exit(130)
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except EdgebloodError as exc:
        # escape(): messages name extras like "edgeblood[openvino]", which rich would eat as markup
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)

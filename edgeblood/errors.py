"""One exception family for problems a user can fix.

The CLI turns an ``EdgebloodError`` into a single red line (no traceback), so every message must
say what was wrong *and* how to fix it. Library callers (a lab app, a notebook) need more than one
line: they catch by kind, so the subclasses below name what went wrong, and every one of them is
still an ``EdgebloodError`` (the CLI's handling, and any ``except EdgebloodError``, stay as they are).
"""

import importlib
import importlib.util
from collections.abc import Iterable
from types import ModuleType


class EdgebloodError(Exception):
    """A user-fixable problem: bad input, missing file, absent optional runtime."""


class ConfigError(EdgebloodError):
    """An option or setting that cannot work (unknown recipe, unknown training option, out-of-range value)."""


class DataError(EdgebloodError):
    """Images or data that cannot be used: missing or unreadable files, wrong shapes, too small for the framing."""


class RunError(EdgebloodError):
    """A run directory or checkpoint that is missing, incomplete or not readable as an edgeblood run."""


class ModelError(EdgebloodError):
    """A model or exported artifact that cannot be opened or used for prediction."""


class ExportError(EdgebloodError):
    """An export that produced nothing, or an artifact that disagrees with the PyTorch model (parity)."""


class MissingExtraError(EdgebloodError):
    """An optional runtime or converter that is not installed; ``extra`` names the pip extra that brings it."""

    def __init__(self, message: str, *, package: str = "", extra: str = ""):
        super().__init__(message)
        self.package = package
        self.extra = extra


def missing_extra(package: str, extra: str) -> MissingExtraError:
    """The error for an optional runtime that is not installed."""
    return MissingExtraError(package=package, extra=extra, message=f"{package} is not installed; install it with: pip install \"edgeblood[{extra}]\"")


def require_modules(needs: Iterable[tuple[str, str, str]]) -> None:
    """Fail before any work when one of ``needs`` ((module, pip package, extra) each) is not installed."""
    for module, package, extra in needs:
        if importlib.util.find_spec(module) is None:
            raise missing_extra(package, extra)


def import_extra(module: str, package: str, extra: str) -> ModuleType:
    """Import an optional runtime's ``module``, or raise :func:`missing_extra` naming ``package`` and the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing_extra(package, extra) from None

"""One exception type for problems a user can fix.

The CLI turns an ``EdgebloodError`` into a single red line (no traceback), so every message must
say what was wrong *and* how to fix it.
"""

import importlib
import importlib.util
from collections.abc import Iterable
from types import ModuleType


class EdgebloodError(Exception):
    """A user-fixable problem: bad input, missing file, absent optional runtime."""


def missing_extra(package: str, extra: str) -> EdgebloodError:
    """The error for an optional runtime that is not installed."""
    return EdgebloodError(f"{package} is not installed; install it with: pip install \"edgeblood[{extra}]\"")


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

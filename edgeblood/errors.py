"""One exception type for problems a user can fix.

The CLI turns an ``EdgebloodError`` into a single red line (no traceback), so every message must
say what was wrong *and* how to fix it.
"""


class EdgebloodError(Exception):
    """A user-fixable problem: bad input, missing file, absent optional runtime."""


def missing_extra(package: str, extra: str) -> EdgebloodError:
    """The error for an optional runtime that is not installed."""
    return EdgebloodError(f"{package} is not installed; install it with: pip install \"edgeblood[{extra}]\"")

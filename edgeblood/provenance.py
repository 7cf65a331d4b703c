"""Where a result came from: library versions, git commit, the command line."""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

_LIBRARIES = ("edgeblood", "torch", "numpy", "onnx", "onnxruntime", "openvino", "nncf", "coremltools", "torch-pruning")


def library_versions(names: tuple[str, ...] = _LIBRARIES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    """The commit of the edgeblood checkout in use (None for an installed wheel), '+dirty' if modified."""
    repo = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def command_line() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(("edgeblood", "__main__.py")):
        argv[0] = "edgeblood"
    return shlex.join(argv)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

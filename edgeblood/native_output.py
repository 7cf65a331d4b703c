"""Keep what native libraries print at load time off the user's terminal.

LiteRT, ExecuTorch, torchao and litert-torch write INFO lines, CPU-probe chatter and deprecation
warnings straight to file descriptors 1 and 2 from C++ ("INFO: Created TensorFlow Lite XNNPACK
delegate", "[cpuinfo_utils.cpp:87] Failed to open midr file", "Failed to load ..._C_mxfp8.so"):
none of it is for a user, and it breaks tables and piped JSON. ``silenced()`` points both
descriptors at a temporary file for the duration of a conversion or a model load; when the block
fails, the last lines it captured are attached to the exception, so nothing needed for a bug report
is lost.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

TAIL_LINES = 20


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Run the block with fds 1/2 (and Python warnings) sent to a scratch file; restore them after."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = (os.dup(1), os.dup(2))
    except OSError:  # no real descriptors (embedded interpreters): nothing to redirect
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        except BaseException as exc:
            _restore(saved)
            saved = None
            sink.seek(0)
            tail = sink.read().decode("utf-8", "replace").strip().splitlines()[-TAIL_LINES:]
            if tail and hasattr(exc, "add_note"):
                exc.add_note("native output before the error:\n" + "\n".join(tail))
            raise
        finally:
            if saved is not None:
                _restore(saved)


def _restore(saved: tuple[int, int]) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    for target, fd in zip((1, 2), saved):
        with contextlib.suppress(OSError):
            os.dup2(fd, target)
    for fd in saved:
        with contextlib.suppress(OSError):
            os.close(fd)

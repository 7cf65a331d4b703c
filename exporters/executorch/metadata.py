"""The contract inside a .pte program: the constant method ``edgeblood_metadata``, returning it as a JSON string.

A .pte has no free-form metadata table; constant methods are ExecuTorch's way to ship values with a
program, and the Android/iOS runtimes can call them like ``forward``. Written at lowering (fp32 export
and the PT2E int8 path alike); read back by the ExecuTorch adapter.
"""

from __future__ import annotations

import json
from typing import Any

METADATA_METHOD = "edgeblood_metadata"


def constant_methods(metadata: dict[str, str]) -> dict[str, str]:
    """The ``constant_methods`` argument of ``to_edge_transform_and_lower`` that stores ``metadata``."""
    return {METADATA_METHOD: json.dumps(metadata, sort_keys=True)}


def read_executorch_metadata(program: Any) -> dict[str, Any]:
    """The contract stored as the constant method ``edgeblood_metadata`` (a JSON string) of a .pte program."""
    from edgeblood.contract import decode_metadata

    if METADATA_METHOD not in program.method_names:
        return {}
    (value,) = program.load_method(METADATA_METHOD).execute([])
    return decode_metadata(json.loads(value if isinstance(value, str) else bytes(value.numpy()).decode("utf-8")))
